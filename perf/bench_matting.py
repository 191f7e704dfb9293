"""Alpha matting: ours vs pymatting's closed form (rembg's path), same trimaps, side by side.

Cases: the eval set's real alpha matte (alphamatting_gt01), and composites of real objects
(eval photos cut by their ground-truth masks, edges softened into a known alpha) over other
real photos, at the sizes users send (0.3 to 5 megapixels). Each case gets one trimap from
rembg's rule (foreground > 240 and background < 10, each eroded by 10 px) applied to the
ground-truth alpha, so both methods solve exactly the same problem. Runs are interleaved
and repeated; time is the median, error the mean |alpha - gt| over the unknown band and over
the whole image.

    python perf/bench_matting.py [--repeats 2] [--out perf/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from rmbg_backend.matting import matte, trimap  # noqa: E402

from machine import machine_info  # noqa: E402

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
# (foreground id, background id, long side in pixels) for the composites
COMPOSITES = [
    ("grabcut_teddy", "grabcut_bush", 640),
    ("grabcut_181079", "ecssd_0100", 800),
    ("ecssd_0074", "grabcut_sheep", 1200),
    ("grabcut_person1", "dis5k_pavilion_5795028920", 1600),
    ("davis_bike_00000", "grabcut_flower", 2048),
    ("dis5k_bag_2339506821", "dis5k_pavilion_5795028920", 2592),
]


def load_rgb(image_id: str) -> np.ndarray:
    path = next((EVAL / "images").glob(f"{image_id}.*"))
    return np.asarray(Image.open(path).convert("RGB"))


def load_mask(image_id: str) -> np.ndarray:
    return np.asarray(Image.open(EVAL / "masks" / f"{image_id}.png").convert("L"))


def resize_long(img: np.ndarray, long_side: int, interp: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = long_side / max(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def composite(fg_id: str, bg_id: str, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Known foreground over a real background; alpha = the GT mask with softened edges."""
    fg = resize_long(load_rgb(fg_id), long_side, cv2.INTER_AREA).astype(np.float32)
    alpha = resize_long(load_mask(fg_id), long_side, cv2.INTER_AREA).astype(np.float32) / 255
    alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=max(1.0, long_side / 400))
    h, w = alpha.shape
    bg = load_rgb(bg_id)
    s = max(h / bg.shape[0], w / bg.shape[1])
    bg = cv2.resize(bg, (max(w, round(bg.shape[1] * s)), max(h, round(bg.shape[0] * s))), interpolation=cv2.INTER_AREA)
    bg = bg[:h, :w].astype(np.float32)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), alpha


def cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = [("alphamatting_gt01 (real matte, 800x497)", load_rgb("alphamatting_gt01"),
            load_mask("alphamatting_gt01").astype(np.float32) / 255)]
    for fg_id, bg_id, long_side in COMPOSITES:
        image, alpha = composite(fg_id, bg_id, long_side)
        out.append((f"{fg_id} over {bg_id} ({image.shape[1]}x{image.shape[0]})", image, alpha))
    return out


def run_pymatting(image: np.ndarray, tri: np.ndarray) -> np.ndarray:
    from pymatting import estimate_alpha_cf

    return estimate_alpha_cf(image.astype(np.float64) / 255, tri.astype(np.float64) / 255)


def run_ours(image: np.ndarray, tri: np.ndarray) -> np.ndarray:
    return matte(image, tri)


def errors(alpha: np.ndarray, gt: np.ndarray, band: np.ndarray) -> dict[str, float]:
    diff = np.abs(np.clip(alpha, 0, 1) - gt)
    return {"mae_band": float(diff[band].mean()), "mae_image": float(diff.mean())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("perf/results"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    methods = {"pymatting_cf": run_pymatting, "ours": run_ours}
    warm_tri = np.full((16, 16), 128, np.uint8)
    warm_tri[:4], warm_tri[-4:] = 0, 255
    run_pymatting(np.zeros((16, 16, 3), np.uint8), warm_tri)  # numba JIT warm-up
    results = []
    for name, image, gt in cases():
        tri = trimap(np.clip(gt * 255 + 0.5, 0, 255).astype(np.uint8))
        band = tri == 128
        row = {"case": name, "pixels": int(gt.size), "unknown_pixels": int(band.sum())}
        times = {m: [] for m in methods}
        for _ in range(args.repeats):
            for method, fn in methods.items():  # interleaved
                t0 = time.perf_counter()
                alpha = fn(image, tri)
                times[method].append(time.perf_counter() - t0)
                row[method] = errors(alpha, gt, band)
        for method in methods:
            row[method]["seconds"] = statistics.median(times[method])
        row["speedup"] = row["pymatting_cf"]["seconds"] / row["ours"]["seconds"]
        results.append(row)
        print(f"{name}: pymatting {row['pymatting_cf']['seconds']:.2f} s band MAE "
              f"{row['pymatting_cf']['mae_band']:.4f} | ours {row['ours']['seconds']:.2f} s band MAE "
              f"{row['ours']['mae_band']:.4f} | x{row['speedup']:.1f}", flush=True)
    total = {m: sum(r[m]["seconds"] for r in results) for m in methods}
    summary = {
        "total_seconds": total,
        "speedup_total_time": total["pymatting_cf"] / total["ours"],
        "speedup_median_case": statistics.median(r["speedup"] for r in results),
        "mean_mae_band": {m: statistics.mean(r[m]["mae_band"] for r in results) for m in methods},
        "mean_mae_image": {m: statistics.mean(r[m]["mae_image"] for r in results) for m in methods},
    }
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine_info(),
              "cpus": os.cpu_count(), "repeats": args.repeats, "cases": results, "summary": summary}
    (args.out / "matting.json").write_text(json.dumps(report, indent=2))
    plot(results, args.out / "matting.png")
    print(json.dumps(summary, indent=2))
    return 0


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["case"].split(" (")[0].replace(" over ", "\nover ") for r in results]
    x = np.arange(len(results))
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 5))
    for i, (m, color) in enumerate((("pymatting_cf", "#c44"), ("ours", "#37a"))):
        a.bar(x + (i - 0.5) * 0.4, [r[m]["seconds"] for r in results], 0.4, label=m, color=color)
        b.bar(x + (i - 0.5) * 0.4, [r[m]["mae_band"] for r in results], 0.4, label=m, color=color)
    a.set_yscale("log")
    a.set_ylabel("seconds (log)")
    a.set_title("time per image (2 threads)")
    b.set_ylabel("mean |alpha - gt| in the unknown band")
    b.set_title("error against ground-truth alpha (lower is better)")
    for ax in (a, b):
        ax.set_xticks(x, labels, fontsize=7, rotation=30, ha="right")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
