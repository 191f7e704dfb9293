"""Every highQuality candidate measured on ../shared/eval, directly on the engine (no server).

The served CPU engine (the int8 IR `make repo` builds, from the same cache; ``--precision f32``
for the float ONNX) runs each photo's views in one batch: the photo as served, its mirror
image, the subject's crop at several margins (and mirrored), other input resizes. The variants
below combine those predictions and are scored with the eval tools' figures (MAE, IoU@0.5,
edge-band error; tests/conftest.py). The kept variant is computed by the served code itself
(``high_quality_alpha``). Figures per category, and a leave-one-category-out check of the one
tuned knob (the crop margin), so that a choice which only fits some photos shows. Writes
perf/results/quality_variants.json; the rows of perf/results/EXPERIMENTS.md (issue 23) come
from it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from machine import describe, machine_info

ROOT = Path(__file__).resolve().parents[1]
MARGINS = (0, 10, 20, 30, 40, 60)
METRICS = ("mae", "iou", "edge")


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s colour guided filter at full resolution (guide float 0..1 RGB)."""
    from rmbg_backend.matting import apply_coefficients, guided_coefficients

    return apply_coefficients(guided_coefficients(guide, src, r, eps), (guide * 255 + 0.5).astype(np.uint8))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="imgly-isnet")
    ap.add_argument("--precision", choices=("int8", "f32"), default="int8")
    ap.add_argument("--limit", type=int, default=0, help="use the first N eval images (0: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "perf" / "results" / "quality_variants.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from rmbg_backend.decode import decode_image
    from rmbg_backend.engines import make_engine
    from rmbg_backend.families import family
    from rmbg_backend.high_quality import (
        anti_aliased_decision,
        decision_threshold,
        high_quality_alpha,
        second_pass_box,
    )
    from rmbg_backend.mask import mask_to_probability
    from rmbg_backend.matting import apply_coefficients, guided_coefficients, matte, trimap
    from rmbg_backend.resize import to_model_input
    from rmbg_export.builders import servable_onnx
    from rmbg_export.quantize import cached_int8_ir
    from rmbg_export.sources import resolve
    from tests.conftest import eval_pairs, quality_figures

    fam = family("isnet")
    spec = fam.spec()
    engine_path = servable_onnx(fam, resolve(args.weights), spec)  # cached, as build-repo makes it
    if args.precision == "int8":
        engine_path = cached_int8_ir(engine_path, spec)
    engine = make_engine(str(engine_path), "auto", 0, args.precision)
    norm = spec.mask_normalization
    machine = machine_info()
    print(f"machine: {describe(machine)}; engine {type(engine).__name__} {args.precision} on {engine_path.name}",
          flush=True)

    def probability(pred: np.ndarray, h: int, w: int) -> np.ndarray:
        """As served: a prediction with no contrast is an empty mask."""
        prob = mask_to_probability(pred, h, w, norm)
        return np.zeros((h, w), np.float32) if prob is None else prob

    def decide(prob: np.ndarray, threshold: float | None = None) -> np.ndarray:
        prob = prob.astype(np.float32, copy=True)
        t = decision_threshold(prob) if threshold is None else threshold
        return anti_aliased_decision(prob, t).astype(np.float32) / 255.0

    def mean(*views: np.ndarray) -> np.ndarray:
        return np.mean(views, axis=0, dtype=np.float32)

    # name -> (engine passes per photo, function of the views dict and the photo's rgb)
    Variant = tuple[int, Callable[[dict, np.ndarray], np.ndarray]]
    variants: dict[str, Variant] = {
        "default (RMBG-1.4 recipe, soft)": (1, lambda v, rgb: v["full"]),
        "mirrored input alone (soft)": (1, lambda v, rgb: v["flip"]),
        "flip average (soft)": (2, lambda v, rgb: mean(v["full"], v["flip"])),
        "input resized with Lanczos instead of bilinear (soft)": (1, lambda v, rgb: v["lanczos"]),
        "input letterboxed, aspect kept (soft)": (1, lambda v, rgb: v["letterbox"]),
        **{f"crop {m}% replaces the box (soft)": (2, lambda v, rgb, m=m: v[f"crop{m}"]) for m in (0, 10, 20, 40)},
        "crop 20% averaged with the full view (soft)": (2, lambda v, rgb: mean(v["full"], v["crop20"])),
        "colour guided filter r=2 eps=1e-4 at full resolution": (1, lambda v, rgb: np.clip(
            guided_filter(rgb.astype(np.float32) / 255, v["full"], 2, 1e-4), 0, 1)),
        "fast guided upsampling from model resolution r=2 eps=1e-4": (1, lambda v, rgb: v["fgf"]),
        "closed-form matting of the uncertain band (trimap 230/25, erode 5)": (1, lambda v, rgb: v["matting"]),
        "contrast x2 around 0.5": (1, lambda v, rgb: np.clip((v["full"] - 0.5) * 2 + 0.5, 0, 1)),
        "decision at 0.5, anti-aliased over 1 px": (1, lambda v, rgb: decide(v["full"], 0.5)),
        "Otsu decision, anti-aliased over 1 px": (1, lambda v, rgb: decide(v["full"])),
        "fast guided upsampling + Otsu decision": (1, lambda v, rgb: decide(v["fgf"])),
        "full + flip, Otsu decision": (2, lambda v, rgb: decide(mean(v["full"], v["flip"]))),
        **{f"full + crop {m}%, Otsu decision": (2, lambda v, rgb, m=m: decide(mean(v["full"], v[f"crop{m}"])))
           for m in MARGINS},
        "full + crop 20% weighted by the first pass's uncertainty, Otsu": (2, lambda v, rgb: decide(
            v["full"] + (1 - np.abs(2 * v["full"] - 1)) * (v["crop20"] - v["full"]))),
        "full + crop 20% + its mirror, Otsu decision": (3, lambda v, rgb: decide(
            mean(v["full"], v["crop20"], v["crop20flip"]))),
        "full + crop 10% + crop 30%, Otsu decision": (3, lambda v, rgb: decide(
            mean(v["full"], v["crop10"], v["crop30"]))),
        "KEPT: highQuality as served (full + crop 20%, Otsu decision)": (2, lambda v, rgb: v["served"]),
    }
    figures: dict[str, dict[str, dict[str, float]]] = {name: {} for name in variants}
    pairs = eval_pairs()[: args.limit or None]
    t_start = time.perf_counter()
    for i, p in enumerate(pairs):
        rgb = decode_image(p.image.read_bytes()).rgb
        h, w = rgb.shape[:2]
        x = to_model_input(rgb, spec)
        inputs = {"full": x, "flip": np.ascontiguousarray(x[:, :, ::-1])}
        lanczos = np.asarray(Image.fromarray(rgb).resize((spec.width, spec.height), Image.LANCZOS))
        inputs["lanczos"] = to_model_input(lanczos, spec)  # same size: only normalised
        k = min(spec.width / w, spec.height / h)
        nw, nh = round(w * k), round(h * k)
        px, py = (spec.width - nw) // 2, (spec.height - nh) // 2
        letterbox = cv2.copyMakeBorder(cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR), py,
                                       spec.height - nh - py, px, spec.width - nw - px, cv2.BORDER_REPLICATE)
        inputs["letterbox"] = to_model_input(letterbox, spec)
        first = engine.run(x[np.newaxis])[0]
        prob = probability(first, h, w)
        boxes = {m: second_pass_box(prob, f"{m}%") for m in MARGINS}
        for m, box in boxes.items():
            if box is not None:
                crop = to_model_input(np.ascontiguousarray(rgb[box.y0:box.y1, box.x0:box.x1]), spec)
                inputs[f"crop{m}"] = crop
                if m == 20:
                    inputs["crop20flip"] = np.ascontiguousarray(crop[:, :, ::-1])
        names = [n for n in inputs if n != "full"]
        preds = dict(zip(names, engine.run(np.stack([inputs[n] for n in names])), strict=True))
        views = {"full": prob, "flip": probability(preds["flip"][:, :, ::-1], h, w),
                 "lanczos": probability(preds["lanczos"], h, w),
                 "letterbox": probability(preds["letterbox"][:, py:py + nh, px:px + nw], h, w)}
        for m, box in boxes.items():
            for suffix in ("", "flip") if m == 20 else ("",):
                view = prob.copy()
                if box is not None:
                    pred = preds[f"crop{m}{suffix}"]
                    pred = pred[:, :, ::-1] if suffix else pred
                    crop = mask_to_probability(pred, box.height, box.width, norm)
                    if crop is not None:  # as served: a crop with no contrast is ignored
                        view[box.y0:box.y1, box.x0:box.x1] = crop
                views[f"crop{m}{suffix}"] = view
        small = cv2.resize(rgb, (spec.width, spec.height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        first_small = probability(first, spec.height, spec.width)
        views["fgf"] = np.clip(apply_coefficients(guided_coefficients(small, first_small, 2, 1e-4), rgb), 0, 1)
        tri = trimap((prob * 255 + 0.5).astype(np.uint8), 230, 25, 5)
        views["matting"] = matte(rgb, tri) if (tri == 255).any() and (tri == 0).any() else prob
        served, _ = high_quality_alpha(first, rgb, spec, engine.run)
        views["served"] = served.astype(np.float32) / 255.0
        for name, (_, fn) in variants.items():
            figures[name][p.id] = quality_figures(fn(views, rgb), p.mask)
        kept, plain = figures[list(variants)[-1]][p.id], figures["default (RMBG-1.4 recipe, soft)"][p.id]
        print(f"[{i + 1}/{len(pairs)}] {p.id}: edge error default {plain['edge']:.3f}, kept {kept['edge']:.3f} "
              f"({time.perf_counter() - t_start:.0f} s)", flush=True)

    groups = sorted({p.group for p in pairs})

    def means(rows: dict[str, dict[str, float]], ids: list[str]) -> dict[str, float]:
        return {m: statistics.mean(rows[i][m] for i in ids) for m in METRICS}

    ids = [p.id for p in pairs]
    by_group = {g: [p.id for p in pairs if p.group == g] for g in groups}
    default = figures["default (RMBG-1.4 recipe, soft)"]
    results = {name: {"passes": variants[name][0], **means(rows, ids),
                      "per_category": {g: means(rows, by_group[g]) for g in groups}}
               for name, rows in figures.items()}

    def score(rows: dict[str, dict[str, float]], subset: list[str]) -> float:
        """Lower is better: the three figures relative to the default's on the same photos."""
        a, d = means(rows, subset), means(default, subset)
        return a["mae"] / d["mae"] + a["edge"] / d["edge"] - a["iou"] / d["iou"]

    family = {m: f"full + crop {m}%, Otsu decision" for m in MARGINS}
    loco = {}
    for g in groups if len(groups) > 1 else ():
        train = [i for i in ids if i not in by_group[g]]
        pick = min(MARGINS, key=lambda m: score(figures[family[m]], train))
        loco[g] = {"picked_margin": pick, "held_out": means(figures[family[pick]], by_group[g]),
                   "held_out_default": means(default, by_group[g])}
    report = {"command": " ".join(["python", *sys.argv]), "machine": machine, "images": len(pairs),
              "engine": {"file": engine_path.name, "precision": args.precision, "class": type(engine).__name__},
              "variants": results, "leave_one_category_out_margin": loco,
              "per_image": figures}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    width = max(len(n) for n in results)
    print(f"{'variant':{width}s} passes    MAE     IoU    edge")
    for name, r in results.items():
        print(f"{name:{width}s} {r['passes']:6d}  {r['mae']:.4f}  {r['iou']:.4f}  {r['edge']:.4f}")
    print("leave one category out (crop margin picked on the other categories):")
    for g, r in loco.items():
        print(f"  {g:14s} picks {r['picked_margin']:2d}%: held-out MAE {r['held_out']['mae']:.4f} "
              f"IoU {r['held_out']['iou']:.3f} edge {r['held_out']['edge']:.3f} (default "
              f"{r['held_out_default']['mae']:.4f} / {r['held_out_default']['iou']:.3f} / "
              f"{r['held_out_default']['edge']:.3f})")
    print(f"machine: {describe(machine)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
