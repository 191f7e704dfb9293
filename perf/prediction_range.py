"""Range (max - min) of real IS-Net predictions, to place the "no contrast" threshold of mask.py.

Min-max normalisation stretches whatever range a prediction has to 0..255; on an image with
nothing to cut out the prediction is flat noise, and stretching it draws a random mask. This
measures, with the real imgly-isnet weights through our own decode and preprocessing:
  * the range of the prediction on each of the 31 photos in ../shared/eval (resized to the
    photo's size, as mask_to_alpha sees it), and
  * the range on inputs with no subject: flat colours, a smooth gradient, faint noise.
The threshold must sit far below the first and is best above the second.

    python perf/prediction_range.py [--model model_repository/isnet/1/model.onnx] [--out perf/results]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from rmbg_backend.decode import decode_image
from rmbg_backend.engines import make_engine
from rmbg_backend.families import family
from rmbg_backend.mask import NO_CONTRAST_RANGE
from rmbg_backend.resize import resize_bilinear, to_model_input

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def blank_inputs(h: int = 480, w: int = 640) -> dict[str, bytes]:
    """Inputs with nothing to segment."""
    rng = np.random.default_rng(0)
    flat = {name: np.full((h, w, 3), colour, np.uint8) for name, colour in {
        "white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "red": (220, 30, 30),
        "green": (30, 180, 60), "blue": (30, 60, 200), "skin": (224, 172, 140), "sky": (135, 190, 235)}.items()}
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None].repeat(h, 0).repeat(3, 2)
    flat["gradient"] = ramp.astype(np.uint8)
    flat["faint-noise"] = np.clip(128 + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)
    return {name: _png(rgb) for name, rgb in flat.items()}


def prediction_range(engine, data: bytes, spec) -> dict[str, float]:
    image = decode_image(data)
    pred = engine.run(to_model_input(image.rgb, spec)[None])[0, 0]
    full = resize_bilinear(pred.astype(np.float32), image.height, image.width)
    return {"min": float(full.min()), "max": float(full.max()), "range": float(full.max() - full.min()),
            "median": float(np.median(full))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(ROOT / "model_repository" / "isnet" / "1" / "model.onnx"))
    parser.add_argument("--out", default=str(ROOT / "perf" / "results"))
    args = parser.parse_args()
    spec = family("isnet").spec()
    engine = make_engine(args.model, "onnxruntime")
    with (EVAL / "manifest.csv").open() as f:
        photos = {r["id"]: (EVAL / r["image"]).read_bytes() for r in csv.DictReader(f)}
    real = {key: prediction_range(engine, data, spec) for key, data in photos.items()}
    blank = {key: prediction_range(engine, data, spec) for key, data in blank_inputs().items()}
    real_min = min(v["range"] for v in real.values())
    blank_max = max(v["range"] for v in blank.values())
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine_info(), "weights": "imgly-isnet (npm @imgly/background-removal-data, IS-Net medium)",
        "engine": "onnxruntime f32", "threshold": NO_CONTRAST_RANGE,
        "eval_photos": len(real), "eval_min_range": real_min,
        "eval_min_range_photo": min(real, key=lambda k: real[k]["range"]),
        "blank_max_range": blank_max, "eval": real, "blank": blank,
    }
    out = Path(args.out) / "prediction_range.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"eval photos: smallest range {real_min:.4f}; blank inputs: largest range {blank_max:.6f}; "
          f"threshold {NO_CONTRAST_RANGE} -> {out}")
    for key, v in sorted(blank.items()):
        print(f"  {key:12s} min {v['min']:.6f} max {v['max']:.6f} range {v['range']:.6f}")


if __name__ == "__main__":
    main()
