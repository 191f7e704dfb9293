"""`make bench`: rembg vs a direct onnxruntime pipeline vs our served pipeline, side by side.

One run, the same eval images, the same thread budget (onnxruntime intra-op threads = 2 for
every engine), interleaved image by image:
  (a)  rembg 2.0.86 ``remove()`` with its ``dis_custom`` session on the published IS-Net ONNX
       (own venv, downloads disabled); (a') the same on our converted float32 file;
  (b)  a direct in-process pipeline with our recipe (decode, resize, onnxruntime, mask,
       cut-out, PNG) and no server;
  (c)  our served pipeline through the gRPC client, at concurrency 1, then a concurrency sweep.
Every pipeline returns a PNG cut-out at the input's size. Reports images/s, latency
percentiles, the (c)/(a) ratio, mask agreement of (c) with (b) and the per-step breakdown
from INFO, as perf/results/bench.json and bench.png.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
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

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"
STEPS = ("decode_ms", "preprocess_ms", "model_ms", "postprocess_ms", "encode_ms")


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


class RembgWorker:
    def __init__(self, python: Path, model: Path) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="u2net-"))
        local = self.home / model.name
        try:
            os.link(model, local)
        except OSError:
            shutil.copyfile(model, local)
        env = dict(os.environ, U2NET_HOME=str(self.home), OMP_NUM_THREADS="2")
        self.proc = subprocess.Popen([str(python), str(ROOT / "perf" / "rembg_worker.py"), str(local)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert json.loads(self.proc.stdout.readline())["ready"]

    def remove(self, path: Path) -> float:
        self.proc.stdin.write(json.dumps({"image": str(path)}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["ms"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)
        shutil.rmtree(self.home, ignore_errors=True)


class Direct:
    """Our recipe in-process: the served computation without Triton."""

    def __init__(self, onnx_path: Path) -> None:
        from rmbg_backend.engines import OnnxEngine
        from rmbg_backend.families import family

        self.engine = OnnxEngine(str(onnx_path), intra_op_threads=2)
        self.spec = family("isnet").spec()

    def remove(self, data: bytes) -> tuple[float, np.ndarray]:
        from rmbg_backend import steps

        t0 = time.perf_counter()
        prepared = steps.preprocess(data, b"{}", self.spec)
        mask = self.engine.run(prepared.model_input[None])[0]
        out, _ = steps.postprocess(mask, prepared.pixels, prepared.meta, self.spec)
        ms = (time.perf_counter() - t0) * 1000.0
        return ms, np.asarray(Image.open(io.BytesIO(out)))[:, :, 3]


def served_sweep(client_factory, images: list[bytes], concurrency: int) -> dict:
    latencies = []

    def one(data: bytes) -> float:
        t0 = time.perf_counter()
        client_factory().remove(data)
        return (time.perf_counter() - t0) * 1000.0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, images))
    wall = time.perf_counter() - t0
    return {"concurrency": concurrency, "images_per_s": len(images) / wall, **percentiles(latencies)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    ap.add_argument("--rembg-python", type=Path, default=ROOT / ".venv-rembg" / "bin" / "python")
    ap.add_argument("--source-onnx", type=Path, default=Path.home() / ".cache/rmbg/imgly-isnet-medium-1.4.5.onnx")
    ap.add_argument("--limit", type=int, default=0, help="use the first N eval images (0: all)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    ap.add_argument("--tag", default="bench")
    args = ap.parse_args()

    from rmbg_client import RmbgClient
    from rmbg_server.launcher import ServerConfig, TritonServer

    sys.path.insert(0, str(ROOT))
    from tests.conftest import eval_pairs

    pairs = eval_pairs()[: args.limit or None]
    served_onnx = args.repo / "isnet" / "1" / "model.onnx"
    server = TritonServer(ServerConfig.on_free_ports(args.repo),
                          log_file=Path(tempfile.gettempdir()) / "rmbg-bench-triton.log")
    server.start(timeout=180)
    rembg_src = RembgWorker(args.rembg_python, args.source_onnx)
    rembg_ours = RembgWorker(args.rembg_python, served_onnx)
    direct = Direct(served_onnx)
    client = RmbgClient(server.grpc_url)
    rows = []
    try:
        warm = pairs[0].image
        rembg_src.remove(warm)
        rembg_ours.remove(warm)
        direct.remove(warm.read_bytes())
        client.remove(warm.read_bytes())
        for i, p in enumerate(pairs):
            data = p.image.read_bytes()
            row = {"id": p.id, "width": p.width, "height": p.height}
            row["rembg_ms"] = rembg_src.remove(p.image)
            row["rembg_on_our_onnx_ms"] = rembg_ours.remove(p.image)
            row["direct_ms"], direct_alpha = direct.remove(data)
            t0 = time.perf_counter()
            result = client.remove(data)
            row["served_ms"] = (time.perf_counter() - t0) * 1000.0
            served_alpha = np.asarray(Image.open(io.BytesIO(result.data)))[:, :, 3]
            diff = np.abs(served_alpha.astype(np.float32) - direct_alpha)
            row["mask_mean_abs_diff_vs_direct"] = float(diff.mean() / 255)
            row["steps"] = {k: result.info["timings"][k] for k in STEPS}
            rows.append(row)
            print(f"[{i + 1}/{len(pairs)}] {p.id} {p.width}x{p.height}: rembg {row['rembg_ms']:.0f} ms, "
                  f"rembg(our onnx) {row['rembg_on_our_onnx_ms']:.0f}, direct {row['direct_ms']:.0f}, "
                  f"served {row['served_ms']:.0f}", flush=True)
        images = [p.image.read_bytes() for p in pairs]
        sweep = [served_sweep(lambda: client, images, c) for c in args.concurrency]
        for s in sweep:
            print(f"served concurrency {s['concurrency']}: {s['images_per_s']:.3f} img/s, p50 {s['p50_ms']:.0f} ms",
                  flush=True)
    finally:
        rembg_src.close()
        rembg_ours.close()
        server.stop()

    def pipeline(key: str) -> dict:
        ms = [r[key] for r in rows]
        return {"images_per_s": 1000.0 / statistics.mean(ms), **percentiles(ms)}

    best = max(sweep, key=lambda s: s["images_per_s"])
    steps = {k: statistics.mean(r["steps"][k] for r in rows) for k in STEPS}
    pre_post = steps["decode_ms"] + steps["preprocess_ms"] + steps["postprocess_ms"] + steps["encode_ms"]
    summary = {
        "rembg": pipeline("rembg_ms"),
        "rembg_on_our_onnx": pipeline("rembg_on_our_onnx_ms"),
        "direct": pipeline("direct_ms"),
        "served_c1": pipeline("served_ms"),
        "served_best": best,
        "ratio_served_best_to_rembg": best["images_per_s"] / pipeline("rembg_ms")["images_per_s"],
        "ratio_served_c1_to_rembg": pipeline("served_ms")["images_per_s"] / pipeline("rembg_ms")["images_per_s"],
        "mask_agreement_served_vs_direct": {
            "max_per_image_mean_abs": max(r["mask_mean_abs_diff_vs_direct"] for r in rows),
            "mean": statistics.mean(r["mask_mean_abs_diff_vs_direct"] for r in rows)},
        "steps_mean_ms_c1": steps,
        "pre_plus_post_over_model": pre_post / steps["model_ms"],
    }
    report = {"command": " ".join(["python", *sys.argv]), "machine": platform.platform(), "cpus": os.cpu_count(),
              "images": len(rows), "threads_per_engine": 2, "summary": summary, "sweep": sweep, "per_image": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(report, indent=2))
    plot(summary, sweep, args.out / f"{args.tag}.png")
    print(json.dumps(summary, indent=2))
    return 0


def plot(summary: dict, sweep: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.8))
    names = ["rembg", "rembg_on_our_onnx", "direct", "served_c1", "served_best"]
    vals = [summary[n]["images_per_s"] for n in names]
    labels = ["rembg\npublished", "rembg\nour fp32", "direct\nORT", "served\nc=1",
              f"served\nc={summary['served_best']['concurrency']}"]
    a.bar(labels, vals, color=["#c44", "#e88", "#999", "#37a", "#15c"])
    a.tick_params(axis="x", labelsize=8)
    a.set_ylabel("images / s (higher is better)")
    a.set_title(f"throughput, served best / rembg = x{summary['ratio_served_best_to_rembg']:.2f}")
    b.plot([s["concurrency"] for s in sweep], [s["images_per_s"] for s in sweep], "o-", label="images/s")
    b2 = b.twinx()
    for q, st in (("p50_ms", "--"), ("p99_ms", ":")):
        b2.plot([s["concurrency"] for s in sweep], [s[q] for s in sweep], st, color="#c44", label=q)
    b.set_xlabel("client concurrency")
    b.set_ylabel("images / s")
    b2.set_ylabel("latency ms")
    b.set_title("served: throughput and latency vs concurrency")
    b.legend(loc="upper left")
    b2.legend(loc="lower right")
    steps = summary["steps_mean_ms_c1"]
    c.barh(list(steps), list(steps.values()), color="#37a")
    c.set_xlabel("mean ms per image at c=1")
    c.set_title(f"per-step (pre+post = {100 * summary['pre_plus_post_over_model']:.1f}% of model)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
