"""refineForeground: edge colour error against ground-truth composites, with and without it.

For every eval photo: its subject (the photo inside its ground-truth mask, extended outward
with the nearest subject colour) with the mask's edge softened (Gaussian, ``--sigma`` px) as
alpha, composited over the next eval photo: that is the input, with a known foreground. The
cut-out is put on the photo after that through the real pipeline (shape + compose with a
BACKGROUND) and compared with the ground-truth composite over the same photo, in the soft
edge (0 < alpha < 255). Two alphas cut it out: the ground truth (isolates the colour
estimate) and, with ``--model``, the real IS-Net's prediction on the composite. Also times
refine_foreground per megapixel. Images are shrunk to ``--long-side`` first.

    python perf/bench_refine.py [--model model_repository/isnet/1/model.onnx] [--out perf/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rmbg_backend.families import family  # noqa: E402
from rmbg_backend.mask import mask_to_alpha  # noqa: E402
from rmbg_backend.resize import resize_area, to_model_input  # noqa: E402
from rmbg_backend.shape import refine_foreground  # noqa: E402
from tests.conftest import eval_pairs  # noqa: E402
from tests.edges import edge_colour_error, extend_foreground, soft_alpha  # noqa: E402


def cpu() -> dict[str, str]:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {"model": fields.get("Model name", "?").strip(),
            "avx_flags": " ".join(f for f in flags if f.startswith("avx"))}


def load(path: Path, long_side: int, gray: bool = False) -> np.ndarray:
    im = Image.open(path).convert("L" if gray else "RGB")
    arr = np.asarray(im)
    h, w = arr.shape[:2]
    s = min(1.0, long_side / max(h, w))
    return resize_area(arr, max(1, round(h * s)), max(1, round(w * s))) if s < 1 else arr


def cover(photo: np.ndarray, h: int, w: int) -> np.ndarray:
    s = max(h / photo.shape[0], w / photo.shape[1])
    big = cv2.resize(photo, (max(w, round(photo.shape[1] * s)), max(h, round(photo.shape[0] * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    top, left = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[top:top + h, left:left + w])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "model_repository" / "isnet" / "1" / "model.onnx",
                    help="IS-Net ONNX for the predicted-alpha case (skipped when missing)")
    ap.add_argument("--sigma", type=float, default=2.0, help="edge softening of the binary masks, pixels")
    ap.add_argument("--long-side", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = ap.parse_args()
    engine = spec = None
    if args.model.is_file():
        from rmbg_backend.engines import make_engine

        engine, spec = make_engine(str(args.model)), family("isnet").spec()
    pairs = eval_pairs()
    rows, refine_s, refine_mp = [], [], []
    for i, pair in enumerate(pairs):
        photo = load(pair.image, args.long_side)
        h, w = photo.shape[:2]
        mask = cv2.resize(load(pair.mask, args.long_side, gray=True), (w, h), interpolation=cv2.INTER_AREA)
        is_matte = float(((mask > 0) & (mask < 255)).mean()) > 0.01  # a real alpha matte: used as it is
        alpha = mask if is_matte else soft_alpha(mask, args.sigma)
        fg = extend_foreground(photo, mask)
        old_bg = cover(load(pairs[(i + 1) % len(pairs)].image, args.long_side), h, w)
        new_bg = cover(load(pairs[(i + 2) % len(pairs)].image, args.long_side), h, w)
        row = {"id": pair.id, "size": [w, h], "old_background": pairs[(i + 1) % len(pairs)].id,
               "new_background": pairs[(i + 2) % len(pairs)].id,
               "edge_pixels": int(((alpha > 0) & (alpha < 255)).sum())}
        plain, refined = edge_colour_error(fg, alpha, old_bg, new_bg)
        row["gt_alpha"] = {"plain": plain, "refined": refined}
        source = np.clip(fg * (alpha[..., None] / 255.0) + old_bg * (1 - alpha[..., None] / 255.0) + 0.5,
                         0, 255).astype(np.uint8)
        if engine is not None:
            pred = engine.run(to_model_input(source, spec)[None])[0]
            cut = mask_to_alpha(pred, h, w, spec.mask_normalization)
            plain, refined = edge_colour_error(fg, alpha, old_bg, new_bg, cut_alpha=cut)
            row["isnet_alpha"] = {"plain": plain, "refined": refined}
        t0 = time.perf_counter()
        refine_foreground(source, alpha)
        refine_s.append(time.perf_counter() - t0)
        refine_mp.append(h * w / 1e6)
        rows.append(row)
        print(f"{pair.id:32s} gt alpha {row['gt_alpha']['plain']:6.2f} -> {row['gt_alpha']['refined']:6.2f}"
              + (f" | IS-Net alpha {row['isnet_alpha']['plain']:6.2f} -> {row['isnet_alpha']['refined']:6.2f}"
                 if "isnet_alpha" in row else ""), flush=True)
    summary = {}
    for case in ("gt_alpha", "isnet_alpha"):
        got = [r[case] for r in rows if case in r]
        if got:
            summary[case] = {
                "mean_plain": statistics.mean(g["plain"] for g in got),
                "mean_refined": statistics.mean(g["refined"] for g in got),
                "median_ratio": statistics.median(g["refined"] / g["plain"] for g in got),
                "images_improved": sum(g["refined"] < g["plain"] for g in got),
                "images": len(got),
            }
    summary["refine_ms_per_megapixel"] = 1000 * sum(refine_s) / sum(refine_mp)
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.platform(),
              "cpu": cpu(), "sigma": args.sigma, "long_side": args.long_side,
              "metric": "mean |result - ground-truth composite| over RGB, 0..255, in the soft edge 0 < alpha < 255",
              "rows": rows, "summary": summary}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "refine_foreground.json").write_text(json.dumps(report, indent=2))
    plot(rows, summary, args.out / "refine_foreground.png")
    print(json.dumps(summary, indent=2))
    return 0


def plot(rows: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in ("gt_alpha", "isnet_alpha") if c in summary]
    fig, axes = plt.subplots(len(cases), 1, figsize=(14, 4.2 * len(cases)), squeeze=False)
    x = np.arange(len(rows))
    for ax, case in zip(axes[:, 0], cases, strict=True):
        s = summary[case]
        ax.bar(x - 0.2, [r[case]["plain"] for r in rows], 0.4, color="#c44",
               label=f"plain cut-out (mean {s['mean_plain']:.2f})")
        ax.bar(x + 0.2, [r[case]["refined"] for r in rows], 0.4, color="#37a",
               label=f"refineForeground (mean {s['mean_refined']:.2f})")
        title = "ground-truth alpha" if case == "gt_alpha" else "IS-Net predicted alpha"
        ax.set_title(f"edge colour error, {title}: {s['images_improved']} of {s['images']} images improved")
        ax.set_ylabel("mean |RGB error| in the soft edge (0..255)")
        ax.set_xticks(x, [r["id"] for r in rows], fontsize=7, rotation=40, ha="right")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
