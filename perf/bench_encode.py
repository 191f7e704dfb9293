"""PNG encoding of RGBA cut-outs: Pillow at zlib levels 1, 3, 6 (its default) and 9 vs our encoder.

Ours (rmbg_backend.encode.encode_png, what the service uses): fixed Sub filter, zlib level 1
with the run-length strategy, strips deflated on several threads for large images. Cut-outs
are built from eval photos and their ground-truth masks at their own size, so the measure has
no model in it; each encoder runs twice per image (best time kept), interleaved. Writes
perf/results/encode_png_levels.json with the machine it ran on.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from rmbg_backend.encode import encode_png

from machine import describe, machine_info

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from tests.conftest import eval_pairs

    levels = (1, 3, 6, 9)
    rows = []
    for p in eval_pairs():
        rgba = np.dstack([np.asarray(Image.open(p.image).convert("RGB")), np.asarray(Image.open(p.mask).convert("L"))])
        im = Image.fromarray(rgba, "RGBA")
        row = {"id": p.id, "pixels": p.width * p.height}
        for level in levels:
            best = float("inf")
            for _ in range(2):
                buf = io.BytesIO()
                t0 = time.perf_counter()
                im.save(buf, format="PNG", compress_level=level)
                best = min(best, time.perf_counter() - t0)
            row[f"l{level}_ms"] = best * 1000
            row[f"l{level}_bytes"] = buf.tell()
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            data = encode_png(rgba, "RGBA")
            best = min(best, time.perf_counter() - t0)
        row["ours_ms"], row["ours_bytes"] = best * 1000, len(data)
        rows.append(row)
    summary = {}
    for level in levels:
        summary[f"level_{level}"] = {
            "total_ms": sum(r[f"l{level}_ms"] for r in rows),
            "total_mb": sum(r[f"l{level}_bytes"] for r in rows) / 1e6,
            "median_size_vs_level_6": statistics.median(r[f"l{level}_bytes"] / r["l6_bytes"] for r in rows),
            "median_time_vs_level_6": statistics.median(r[f"l{level}_ms"] / r["l6_ms"] for r in rows),
        }
    summary["ours_level_1"] = {
        "total_ms": sum(r["ours_ms"] for r in rows),
        "total_mb": sum(r["ours_bytes"] for r in rows) / 1e6,
        "median_size_vs_pillow_level_1": statistics.median(r["ours_bytes"] / r["l1_bytes"] for r in rows),
        "median_time_vs_pillow_level_1": statistics.median(r["ours_ms"] / r["l1_ms"] for r in rows),
        "total_time_vs_pillow_level_1": sum(r["ours_ms"] for r in rows) / sum(r["l1_ms"] for r in rows),
    }
    out = ROOT / "perf" / "results" / "encode_png_levels.json"
    machine = machine_info()
    out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "machine": machine,
                               "images": len(rows), "summary": summary, "per_image": rows}, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"machine: {describe(machine)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
