"""CPU engines for the same IS-Net ONNX: onnxruntime vs OpenVINO f32 vs OpenVINO bf16.

Interleaved over eval images, 2 threads each; time is the median model call, mask change is
the mean |alpha - alpha_onnxruntime| of the final 8-bit alpha at the image's size (the
quantity the 1/255 fidelity target is about). Writes perf/results/engines.json.

    python perf/bench_engines.py [--onnx model_repository/isnet/1/model.onnx] [--limit 12]
"""

from __future__ import annotations

import argparse
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
    from rmbg_backend.engines import OnnxEngine, OpenVinoEngine
    from rmbg_backend.families import family
    from rmbg_backend.mask import mask_to_alpha
    from rmbg_backend.resize import to_model_input
    from tests.conftest import eval_pairs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", type=Path, default=ROOT / "model_repository" / "isnet" / "1" / "model.onnx")
    ap.add_argument("--limit", type=int, default=0, help="first N eval images (0: all 31)")
    ap.add_argument("--out", type=Path, default=ROOT / "perf" / "results" / "engines.json")
    args = ap.parse_args()
    engines = {"onnxruntime": OnnxEngine(str(args.onnx), 2), "openvino_f32": OpenVinoEngine(str(args.onnx), 2, "f32"),
               "openvino_bf16": OpenVinoEngine(str(args.onnx), 2, "bf16")}
    spec = family("isnet").spec()
    times = {k: [] for k in engines}
    diffs = {k: [] for k in engines}
    pairs = eval_pairs()[: args.limit or None]
    for e in engines.values():
        e.run(np.zeros((1, 3, 1024, 1024), np.float32))
    for p in pairs:
        rgb = np.asarray(Image.open(p.image).convert("RGB"))
        x = to_model_input(rgb, spec)[None]
        ref = None
        for name, engine in engines.items():
            t0 = time.perf_counter()
            y = engine.run(x)
            times[name].append(time.perf_counter() - t0)
            alpha = mask_to_alpha(y[0], p.height, p.width, "minmax").astype(np.float32)
            ref = alpha if ref is None else ref
            diffs[name].append(float(np.abs(alpha - ref).mean()))
        print(p.id, {k: f"{times[k][-1]:.2f}s {diffs[k][-1]:.3f}/255" for k in engines}, flush=True)
    summary = {k: {"median_s": statistics.median(times[k]), "mask_mean_abs_diff_max_per_image_255": max(diffs[k]),
                   "mask_mean_abs_diff_mean_255": statistics.mean(diffs[k])} for k in engines}
    report = {"command": " ".join(["python", *sys.argv]), "machine": platform.platform(), "images": len(pairs),
              "threads": 2, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
