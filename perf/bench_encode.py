"""PNG zlib level for RGBA cut-outs: time and size at levels 1, 3, 6 (Pillow's default) and 9.

Cut-outs are built from eval photos and their ground-truth masks at their own size, so the
measure has no model in it. Writes perf/results/encode_png_levels.json.
"""

from __future__ import annotations

import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

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
        rows.append(row)
    summary = {}
    for level in levels:
        summary[f"level_{level}"] = {
            "total_ms": sum(r[f"l{level}_ms"] for r in rows),
            "total_mb": sum(r[f"l{level}_bytes"] for r in rows) / 1e6,
            "median_size_vs_level_6": statistics.median(r[f"l{level}_bytes"] / r["l6_bytes"] for r in rows),
            "median_time_vs_level_6": statistics.median(r[f"l{level}_ms"] / r["l6_ms"] for r in rows),
        }
    out = ROOT / "perf" / "results" / "encode_png_levels.json"
    out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "machine": platform.platform(),
                               "images": len(rows), "summary": summary, "per_image": rows}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
