"""`make bench`: rembg vs our served pipeline in f32 and int8, side by side, interleaved image by image.

One run, the same eval photos, the same weights and the same thread budget (2 threads per
engine, the machine's cores):
  (a) rembg 2.0.86 ``remove()`` with its ``dis_custom`` session on the published IS-Net ONNX
      (own venv, downloads disabled);
  (b) our served pipeline (Triton ensemble through the gRPC client) with the f32 engine;
  (c) the same with the int8 engine (``rmbg build-repo --precision int8``, the CPU default).
For each photo the three run back to back, in a rotating order, so machine load (the machine
is shared) hits all of them alike and the ratios stay fair. Every pipeline returns a PNG
cut-out at the input's size; its alpha is scored against the ground truth (MAE, IoU@0.5).
Then a concurrency sweep (1..8) alternates f32 and int8 level by level. The CPU model, ISA
flags and the load average before, during and after are recorded with the figures, which go
to perf/results/bench.json and bench.png.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from machine import describe, machine_info

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("decode_ms", "preprocess_ms", "model_ms", "postprocess_ms", "encode_ms")
PIPELINES = ("rembg", "served_f32", "served_int8")


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def alpha_of(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))[:, :, 3].astype(np.float32) / 255.0


class RembgWorker:
    def __init__(self, python: Path, model: Path) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="u2net-"))
        local = self.home / model.name
        try:
            os.link(model, local)
        except OSError:
            shutil.copyfile(model, local)
        env = dict(os.environ, U2NET_HOME=str(self.home), OMP_NUM_THREADS=str(os.cpu_count() or 2))
        self.proc = subprocess.Popen([str(python), str(ROOT / "perf" / "rembg_worker.py"), str(local)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert json.loads(self.proc.stdout.readline())["ready"]

    def remove(self, path: Path) -> tuple[float, bytes]:
        out = self.home / "out.png"
        self.proc.stdin.write(json.dumps({"image": str(path), "out": str(out)}) + "\n")
        self.proc.stdin.flush()
        ms = json.loads(self.proc.stdout.readline())["ms"]
        return ms, out.read_bytes()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)
        shutil.rmtree(self.home, ignore_errors=True)


def build(weights: str, precision: str, out: Path) -> Path:
    """A repository per precision with `rmbg build-repo` (converted/quantised engines are cached)."""
    cmd = [str(ROOT / ".venv" / "bin" / "rmbg"), "build-repo", "--model", "isnet", "--weights", weights,
           "--precision", precision, "--out", str(out)]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


class Served:
    def __init__(self, repo: Path, name: str) -> None:
        from rmbg_client import RmbgClient
        from rmbg_server.launcher import ServerConfig, TritonServer

        self.server = TritonServer(ServerConfig.on_free_ports(repo),
                                   log_file=Path(tempfile.gettempdir()) / f"rmbg-bench-{name}.log")
        self.server.start(timeout=300)
        self.client = RmbgClient(self.server.grpc_url, timeout=1800.0)  # a loaded shared machine is slow

    def remove(self, data: bytes, options: dict | None = None) -> tuple[float, bytes, dict]:
        t0 = time.perf_counter()
        result = self.client.remove(data, options)
        return (time.perf_counter() - t0) * 1000.0, result.data, result.info

    def sweep(self, images: list[bytes], concurrency: int) -> dict:
        """One level; a failed request is counted, not fatal (the figures so far must survive)."""
        from rmbg_client import RmbgError

        def one(data: bytes) -> float | None:
            try:
                return self.remove(data)[0]
            except RmbgError:
                return None

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, images))
        wall = time.perf_counter() - t0
        latencies = [ms for ms in results if ms is not None] or [wall * 1000.0]
        return {"concurrency": concurrency, "images_per_s": (len(images) - results.count(None)) / wall,
                "failed": results.count(None), "load_1min": os.getloadavg()[0], **percentiles(latencies)}

    def close(self) -> None:
        self.server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="imgly-isnet")
    ap.add_argument("--rembg-python", type=Path, default=ROOT / ".venv-rembg" / "bin" / "python")
    ap.add_argument("--source-onnx", type=Path, default=Path.home() / ".cache/rmbg/imgly-isnet-medium-1.4.5.onnx")
    ap.add_argument("--limit", type=int, default=0, help="use the first N eval images (0: all)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=list(range(1, 9)))
    ap.add_argument("--sweep-images", type=int, default=0, help="photos per sweep level (0: all used)")
    ap.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    ap.add_argument("--tag", default="bench")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from tests.conftest import eval_pairs, mask_quality

    machine = machine_info()
    print(f"machine: {describe(machine)}", flush=True)
    pairs = eval_pairs()[: args.limit or None]
    tmp = Path(tempfile.mkdtemp(prefix="rmbg-bench-"))
    served = {}
    rembg = None
    rows, sweep = [], []
    try:
        for precision in ("f32", "int8"):
            served[f"served_{precision}"] = Served(build(args.weights, precision, tmp / precision), precision)
        rembg = RembgWorker(args.rembg_python, args.source_onnx)
        warm = pairs[0].image
        rembg.remove(warm)
        for s in served.values():
            s.remove(warm.read_bytes())
        load_before = os.getloadavg()
        for i, p in enumerate(pairs):
            data = p.image.read_bytes()
            row: dict = {"id": p.id, "width": p.width, "height": p.height, "load_1min": os.getloadavg()[0]}
            alphas = {}
            for k in range(len(PIPELINES)):  # rotate the order so no pipeline always runs first
                name = PIPELINES[(i + k) % len(PIPELINES)]
                if name == "rembg":
                    row["rembg_ms"], png = rembg.remove(p.image)
                else:
                    row[f"{name}_ms"], png, info = served[name].remove(data)
                    row[f"{name}_steps"] = {s: info["timings"][s] for s in STEPS}
                alphas[name] = alpha_of(png)
                row[f"{name}_mae"], row[f"{name}_iou"] = mask_quality(alphas[name], p.mask)
            row["int8_vs_f32_mean_abs"] = float(np.abs(alphas["served_int8"] - alphas["served_f32"]).mean())
            rows.append(row)
            print(f"[{i + 1}/{len(pairs)}] {p.id} {p.width}x{p.height}: "
                  + ", ".join(f"{n} {row[f'{n}_ms']:.0f} ms" for n in PIPELINES)
                  + f" (load {row['load_1min']:.1f})", flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.tag}_interleaved.json").write_text(json.dumps(
            {"machine": machine, "per_image": rows}, indent=2))  # kept even if the sweep dies
        images = [p.image.read_bytes() for p in pairs[: args.sweep_images or None]]
        for c in args.concurrency:
            for name in ("served_f32", "served_int8"):
                sweep.append({"pipeline": name, **served[name].sweep(images, c)})
                s = sweep[-1]
                print(f"{name} concurrency {c}: {s['images_per_s']:.3f} images/s, p50 {s['p50_ms']:.0f} ms, "
                      f"p99 {s['p99_ms']:.0f} ms (load {s['load_1min']:.1f})", flush=True)
        load_after = os.getloadavg()
    finally:
        if rembg is not None:
            rembg.close()
        for s in served.values():
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)

    summary = summarise(rows, sweep)
    machine["load_average_before"] = [round(x, 2) for x in load_before]
    machine["load_average_after"] = [round(x, 2) for x in load_after]
    report = {"command": " ".join(["python", *sys.argv]), "machine": machine, "images": len(rows),
              "threads_per_engine": os.cpu_count(), "summary": summary, "sweep": sweep, "per_image": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(report, indent=2))
    plot(summary, sweep, machine, args.out / f"{args.tag}.png")
    print(json.dumps(summary, indent=2))
    print(f"machine: {describe(machine)}; load average after: {machine['load_average_after']}")
    return 0


def summarise(rows: list[dict], sweep: list[dict]) -> dict:
    def pipeline(name: str) -> dict:
        ms = [r[f"{name}_ms"] for r in rows]
        return {"images_per_s": 1000.0 / statistics.mean(ms), **percentiles(ms),
                "mae": statistics.mean(r[f"{name}_mae"] for r in rows),
                "iou": statistics.mean(r[f"{name}_iou"] for r in rows)}

    summary: dict = {name: pipeline(name) for name in PIPELINES}
    rembg = summary["rembg"]["images_per_s"]
    for name in ("served_f32", "served_int8"):
        best = max((s for s in sweep if s["pipeline"] == name), key=lambda s: s["images_per_s"])
        steps = {k: statistics.mean(r[f"{name}_steps"][k] for r in rows) for k in STEPS}
        pre_post = sum(v for k, v in steps.items() if k != "model_ms")
        per_image = [sum(v for k, v in r[f"{name}_steps"].items() if k != "model_ms") / r[f"{name}_steps"]["model_ms"]
                     for r in rows]
        summary[name].update({
            "pre_plus_post_over_model_median_per_image": statistics.median(per_image),
            "best_sweep": best,
            "ratio_c1_to_rembg": summary[name]["images_per_s"] / rembg,
            "ratio_best_to_rembg": best["images_per_s"] / rembg,
            "steps_mean_ms_c1": steps,
            "pre_plus_post_over_model": pre_post / steps["model_ms"],
        })
    summary["ratio_int8_to_f32_c1"] = summary["served_int8"]["images_per_s"] / summary["served_f32"]["images_per_s"]
    summary["int8_vs_f32_alpha"] = {"mean": statistics.mean(r["int8_vs_f32_mean_abs"] for r in rows),
                                    "max_per_image": max(r["int8_vs_f32_mean_abs"] for r in rows)}
    summary["quality_delta_int8_minus_f32"] = {"mae": summary["served_int8"]["mae"] - summary["served_f32"]["mae"],
                                               "iou": summary["served_int8"]["iou"] - summary["served_f32"]["iou"]}
    return summary


def plot(summary: dict, sweep: list[dict], machine: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 5))
    f32, int8 = summary["served_f32"], summary["served_int8"]
    labels = ["rembg\n2.0.86", "served f32\nc=1", "served int8\nc=1",
              f"served f32\nc={f32['best_sweep']['concurrency']}",
              f"served int8\nc={int8['best_sweep']['concurrency']}"]
    vals = [summary["rembg"]["images_per_s"], f32["images_per_s"], int8["images_per_s"],
            f32["best_sweep"]["images_per_s"], int8["best_sweep"]["images_per_s"]]
    a.bar(labels, vals, color=["#c44", "#8ab", "#4a4", "#37a", "#181"])
    a.tick_params(axis="x", labelsize=8)
    a.set_ylabel("images / s (higher is better)")
    a.set_title(f"int8 / rembg = x{int8['ratio_best_to_rembg']:.2f} (best), x{int8['ratio_c1_to_rembg']:.2f} (c=1)")
    for name, color in (("served_f32", "#37a"), ("served_int8", "#181")):
        rows = [s for s in sweep if s["pipeline"] == name]
        b.plot([s["concurrency"] for s in rows], [s["images_per_s"] for s in rows], "o-", color=color,
               label=name.removeprefix("served_"))
    b.axhline(summary["rembg"]["images_per_s"], color="#c44", ls="--", label="rembg")
    b.set(xlabel="client concurrency", ylabel="images / s", title="served throughput vs concurrency")
    b.legend()
    steps = list(int8["steps_mean_ms_c1"])
    y = np.arange(len(steps))
    c.barh(y - 0.2, [f32["steps_mean_ms_c1"][k] for k in steps], 0.4, label="f32", color="#37a")
    c.barh(y + 0.2, [int8["steps_mean_ms_c1"][k] for k in steps], 0.4, label="int8", color="#181")
    c.set_yticks(y, steps)
    c.set_xlabel("mean ms per image at c=1")
    c.set_title(f"pre+post / model: f32 {100 * f32['pre_plus_post_over_model']:.1f}%, "
                f"int8 {100 * int8['pre_plus_post_over_model']:.1f}%")
    c.legend()
    fig.suptitle(describe(machine), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
