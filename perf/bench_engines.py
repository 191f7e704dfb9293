"""CPU engines for one model, side by side: onnxruntime, OpenVINO f32, bf16 and int8 (NNCF IR).

The f32 ONNX and the int8 IR are the ones ``rmbg build-repo`` makes (cached). Interleaved over
eval images in a rotating order, with the machine's threads each; time is the model call
alone (median and mean), load is read + compile. Mask change is the mean |alpha - alpha_f32|
of the final 8-bit alpha at the image's size against OpenVINO f32; quality (MAE, IoU@0.5
against the ground truth) is meaningful only for real weights (synthetic weights make
meaningless masks: the change against f32 is still what int8 costs). Writes
perf/results/engines_<model>.json with the machine it ran on.

    python perf/bench_engines.py --model isnet --weights imgly-isnet
    python perf/bench_engines.py --model birefnet --variant birefnet-lite --weights synthetic --limit 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from machine import describe, machine_info

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from rmbg_backend.engines import make_engine
    from rmbg_backend.families import family
    from rmbg_backend.mask import mask_to_alpha
    from rmbg_backend.resize import to_model_input
    from rmbg_export.builders import servable_onnx
    from rmbg_export.quantize import cached_int8_ir
    from rmbg_export.sources import resolve
    from tests.conftest import eval_pairs, mask_quality

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="isnet")
    ap.add_argument("--variant", default=None)
    ap.add_argument("--weights", default="imgly-isnet")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--engines", default="onnxruntime,openvino_f32,openvino_bf16,openvino_int8")
    ap.add_argument("--limit", type=int, default=0, help="first N eval images (0: all 31)")
    ap.add_argument("--out", type=Path, default=None, help="default perf/results/engines_<model or variant>.json")
    args = ap.parse_args()
    machine = machine_info()
    print(f"machine: {describe(machine)}", flush=True)
    fam = family(args.model)
    spec = fam.spec(args.size)
    weights = resolve(args.weights)
    f32 = servable_onnx(fam, weights, spec, args.variant)
    wanted = args.engines.split(",")
    int8 = cached_int8_ir(f32, spec) if "openvino_int8" in wanted else None
    threads = os.cpu_count() or 1
    factories = {"onnxruntime": lambda: make_engine(str(f32), "onnxruntime", threads),
                 "openvino_f32": lambda: make_engine(str(f32), "openvino", threads, "f32"),
                 "openvino_bf16": lambda: make_engine(str(f32), "openvino", threads, "bf16"),
                 "openvino_int8": lambda: make_engine(str(int8), "openvino", threads, "int8")}
    engines, load_s = {}, {}
    for name in wanted:
        t0 = time.perf_counter()
        engines[name] = factories[name]()
        load_s[name] = time.perf_counter() - t0
        engines[name].run(np.zeros((1, 3, spec.height, spec.width), np.float32))
    names = list(engines)
    times = {k: [] for k in names}
    diffs = {k: [] for k in names}
    quality = {k: [] for k in names}
    pairs = eval_pairs()[: args.limit or None]
    for i, p in enumerate(pairs):
        x = to_model_input(np.asarray(Image.open(p.image).convert("RGB")), spec)[None]
        alphas = {}
        for k in range(len(names)):
            name = names[(i + k) % len(names)]
            t0 = time.perf_counter()
            y = engines[name].run(x)
            times[name].append(time.perf_counter() - t0)
            alphas[name] = mask_to_alpha(y[0], p.height, p.width, spec.mask_normalization).astype(np.float32)
            quality[name].append(mask_quality(alphas[name] / 255.0, p.mask))
        ref = alphas.get("openvino_f32", alphas[names[0]])
        for name in names:
            diffs[name].append(float(np.abs(alphas[name] - ref).mean()))
        print(p.id, {k: f"{times[k][-1]:.2f}s {diffs[k][-1]:.3f}/255" for k in names},
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    summary = {k: {"median_s": statistics.median(times[k]), "mean_s": statistics.mean(times[k]),
                   "load_and_compile_s": load_s[k],
                   "speedup_vs_openvino_f32": (statistics.mean(times["openvino_f32"]) / statistics.mean(times[k])
                                               if "openvino_f32" in times else None),
                   "mask_mean_abs_diff_vs_f32_mean_255": statistics.mean(diffs[k]),
                   "mask_mean_abs_diff_vs_f32_max_per_image_255": max(diffs[k]),
                   "mae": statistics.mean(q[0] for q in quality[k]), "iou": statistics.mean(q[1] for q in quality[k])}
               for k in names}
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    tag = args.variant or args.model
    report = {"command": " ".join(["python", *sys.argv]), "machine": machine, "model": tag, "weights": args.weights,
              "size": [spec.height, spec.width], "images": len(pairs), "threads": threads,
              "synthetic_weights": weights.kind == "synthetic", "summary": summary}
    out = args.out or ROOT / "perf" / "results" / f"engines_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"machine: {describe(machine)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
