"""`make eval`: the served pipeline's quality on ../shared/eval, default vs highQuality vs rembg, in one run.

For every photo the three run back to back in a rotating order (so load on this shared machine
hits them alike): rembg 2.0.86 ``remove()`` on the same IS-Net weights (its own venv, downloads
disabled), our served default request and our served ``{"highQuality": true}`` request, each
returning a PNG cut-out whose alpha is scored against the ground truth: MAE, IoU@0.5 and the
edge-band error (mean |alpha - truth| within 10 px of the truth's edge; tests/conftest.py).
Figures per photo, per category and overall, the time per image of each, and the ratios that
the issue's targets are stated in (highQuality / default time, highQuality edge error / rembg's)
go to perf/results/eval_quality.json; eval_quality.png plots them per category.
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
from bench import RembgWorker, Served, alpha_of

from machine import describe, machine_info

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ("rembg", "default", "high_quality")
OPTIONS = {"default": {}, "high_quality": {"highQuality": True}}
METRICS = ("mae", "iou", "edge")
# The targets for highQuality on ../shared/eval (README, "highQuality").
TARGETS = {"mae_max": 0.029, "iou_min": 0.91, "edge_below_rembg": 0.13, "time_ratio_max": 3.0}


def mean_figures(rows: list[dict], name: str) -> dict[str, float]:
    return {m: statistics.mean(r[name][m] for r in rows) for m in METRICS}


def summarise(rows: list[dict]) -> dict:
    summary: dict = {}
    for name in PIPELINES:
        ms = [r[name]["ms"] for r in rows]
        summary[name] = {**mean_figures(rows, name), "mean_ms": statistics.mean(ms),
                         "median_ms": statistics.median(ms)}
    hq, default, rembg = summary["high_quality"], summary["default"], summary["rembg"]
    summary["time_ratio_high_quality_to_default"] = {
        "of_means": hq["mean_ms"] / default["mean_ms"],
        "median_per_image": statistics.median(r["high_quality"]["ms"] / r["default"]["ms"] for r in rows),
    }
    summary["edge_below_rembg"] = {name: 1.0 - summary[name]["edge"] / rembg["edge"] for name in ("default",
                                                                                                "high_quality")}
    summary["targets"] = TARGETS
    summary["met"] = {
        "high_quality_mae": hq["mae"] <= TARGETS["mae_max"],
        "high_quality_iou": hq["iou"] >= TARGETS["iou_min"],
        "high_quality_edge_vs_rembg": summary["edge_below_rembg"]["high_quality"] >= TARGETS["edge_below_rembg"],
        "high_quality_time": summary["time_ratio_high_quality_to_default"]["of_means"] <= TARGETS["time_ratio_max"],
    }
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    summary["per_category"] = {g: {"images": len(rs), **{name: mean_figures(rs, name) for name in PIPELINES}}
                               for g, rs in sorted(groups.items())}
    return summary


def plot(summary: dict, machine: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = list(summary["per_category"])
    labels = [f"{c}\n({summary['per_category'][c]['images']})" for c in cats] + ["all"]
    colours = {"rembg": "#c44", "default": "#8ab", "high_quality": "#181"}
    fig, axes = plt.subplots(1, 4, figsize=(22, 5))
    x = np.arange(len(labels))
    titles = {"mae": "MAE (lower is better)", "iou": "IoU@0.5 (higher is better)",
              "edge": "edge-band error, 10 px (lower is better)"}
    for ax, metric in zip(axes, METRICS, strict=False):
        for k, name in enumerate(PIPELINES):
            vals = [summary["per_category"][c][name][metric] for c in cats] + [summary[name][metric]]
            ax.bar(x + (k - 1) * 0.27, vals, 0.27, label=name.replace("_", " "), color=colours[name])
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_title(titles[metric])
        if metric == "iou":
            ax.set_ylim(0.6, 1.0)
        ax.legend(fontsize=8)
    ax = axes[3]
    means = [summary[name]["mean_ms"] for name in PIPELINES]
    ax.bar([n.replace("_", " ") for n in PIPELINES], means, color=[colours[n] for n in PIPELINES])
    ratio = summary["time_ratio_high_quality_to_default"]["of_means"]
    ax.set_title(f"mean ms per image (highQuality / default = {ratio:.2f}x)")
    fig.suptitle(f"../shared/eval, {sum(c['images'] for c in summary['per_category'].values())} photos; "
                 + describe(machine), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=ROOT / "model_repository",
                    help="a model repository with rmbg_isnet (make repo builds it)")
    ap.add_argument("--rembg-python", type=Path, default=ROOT / ".venv-rembg" / "bin" / "python")
    ap.add_argument("--source-onnx", type=Path, default=Path.home() / ".cache/rmbg/imgly-isnet-medium-1.4.5.onnx",
                    help="the published IS-Net ONNX rembg runs (cached by make repo)")
    ap.add_argument("--limit", type=int, default=0, help="use the first N eval images (0: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    ap.add_argument("--tag", default="eval_quality")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from tests.conftest import eval_pairs, quality_figures

    for path, how in ((args.repo / "rmbg_isnet", "make repo"), (args.rembg_python, "make .venv-rembg/.installed"),
                      (args.source_onnx, "make repo")):
        if not path.exists():
            print(f"eval_quality: {path} is missing; run {how} first", file=sys.stderr)
            return 2
    machine = machine_info()
    print(f"machine: {describe(machine)}", flush=True)
    pairs = eval_pairs()[: args.limit or None]
    served = rembg = None
    rows = []
    try:
        served = Served(args.repo, "eval")
        rembg = RembgWorker(args.rembg_python, args.source_onnx)
        warm = pairs[0].image
        rembg.remove(warm)
        for options in OPTIONS.values():
            served.remove(warm.read_bytes(), options)
        load_before = os.getloadavg()
        for i, p in enumerate(pairs):
            data = p.image.read_bytes()
            row: dict = {"id": p.id, "category": p.category, "group": p.group, "width": p.width,
                         "height": p.height, "load_1min": os.getloadavg()[0]}
            for k in range(len(PIPELINES)):  # rotate the order so no pipeline always runs first
                name = PIPELINES[(i + k) % len(PIPELINES)]
                if name == "rembg":
                    ms, png = rembg.remove(p.image)
                    row[name] = {"ms": ms}
                else:
                    ms, png, info = served.remove(data, OPTIONS[name])
                    row[name] = {"ms": ms, "timings": info["timings"]}
                row[name].update(quality_figures(alpha_of(png), p.mask))
            rows.append(row)
            print(f"[{i + 1}/{len(pairs)}] {p.id}: " + "; ".join(
                f"{n} {row[n]['ms']:.0f} ms MAE {row[n]['mae']:.4f} IoU {row[n]['iou']:.3f} edge {row[n]['edge']:.3f}"
                for n in PIPELINES) + f" (load {row['load_1min']:.1f})", flush=True)
        load_after = os.getloadavg()
    finally:
        if rembg is not None:
            rembg.close()
        if served is not None:
            served.close()

    summary = summarise(rows)
    machine["load_average_before"] = [round(x, 2) for x in load_before]
    machine["load_average_after"] = [round(x, 2) for x in load_after]
    report = {"command": " ".join(["python", *sys.argv]), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine, "images": len(rows), "options": OPTIONS, "summary": summary, "per_image": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(report, indent=2))
    plot(summary, machine, args.out / f"{args.tag}.png")
    for name in PIPELINES:
        s = summary[name]
        print(f"{name:13s} MAE {s['mae']:.4f}  IoU {s['iou']:.4f}  edge {s['edge']:.4f}  "
              f"{s['mean_ms']:.0f} ms mean, {s['median_ms']:.0f} ms median per image")
    ratio = summary["time_ratio_high_quality_to_default"]
    print(f"highQuality / default time: {ratio['of_means']:.2f}x (of means), {ratio['median_per_image']:.2f}x "
          f"(median per image); edge error below rembg: highQuality "
          f"{100 * summary['edge_below_rembg']['high_quality']:.1f}%, default "
          f"{100 * summary['edge_below_rembg']['default']:.1f}%")
    print("targets met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in summary["met"].items()))
    print(f"machine: {describe(machine)}; load average after: {machine['load_average_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
