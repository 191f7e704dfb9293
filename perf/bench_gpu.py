"""GPU figures of the gpu-torch target -> perf/results/gpu_h100.json (the README's GPU figures and their targets).

For IS-Net and BiRefNet at 1024x1024 (synthetic weights unless given: speed does not depend
on them), on one GPU:
  1. model alone: images/s at batch 1, 4, 8, 16 in f32, fp16 and bf16, through the engine
     exactly as served (uint8 in, normalise on the device, BN folded, channels_last, CUDA
     graphs), timed on the device (pixels already there, mask left there), with
     ``fraction_of_ceiling`` = (FLOPs per image / seconds per image) / 989e12 (H100 SXM dense
     fp16/bf16); FLOPs counted with torch.utils.flop_counter on one image (convolutions and
     matrix products; grid_sample and elementwise work are not counted). ``host_images_per_s``
     adds the uint8 upload and the mask download (what the served engine step does).
  2. served: a gpu-torch repository through the real Triton server, gRPC clients at
     concurrency 1, 4, 16, 64 sending a 1024x1024 JPEG (PNG cut-out back; ``--options``):
     ``served_images_per_s``, p50/p99 latency, the mean per-step times from INFO (where the
     time goes) and the instance counts used.
  3. precision: mean |mask - f32 mask| of fp16 and bf16 on eval photos.

``--device cpu --smoke`` runs every part end to end on the CPU with the tiny variants at 64 px
(a check that the script works, never a figure): it refuses to write perf/results/gpu_*.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
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
sys.path[:0] = [str(ROOT / "perf"), str(ROOT)]  # the perf helpers as the other scripts import them; tests
from bench import STEPS, percentiles  # noqa: E402

from tests.conftest import eval_pairs  # noqa: E402

from machine import machine_info  # noqa: E402

CEILING_FLOPS = 989e12  # H100 SXM, dense fp16/bf16 tensor cores
PRECISIONS = ("f32", "fp16", "bf16")
VARIANTS = {"isnet": "isnet", "birefnet": "birefnet"}
SMOKE_VARIANTS = {"isnet": "isnet-tiny", "birefnet": "birefnet-tiny"}


def environment(device: str) -> dict:
    import torch

    env = {"torch": torch.__version__, "cuda_runtime": torch.version.cuda, "python": platform.python_version(),
           "machine": machine_info()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   compute_capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                   cudnn=torch.backends.cudnn.version(), driver=_nvidia_smi("driver_version"),
                   # "f32" figures: convolutions may use TF32 tensor cores (PyTorch's default), matmuls not
                   cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                   matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    try:
        env["commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                       capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return env


def _nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def weights_for(model: str, variant: str, source: str) -> Path:
    from rmbg_export.sources import resolve
    from rmbg_export.torch_weights import torch_weights_file

    return torch_weights_file(model, resolve(source), variant)[0]


def make_engine(model: str, variant: str, weights: Path, size: int, precision: str, args, max_batch: int):
    from rmbg_backend.families import family
    from rmbg_backend.torch_engine import TorchEngine, TorchSettings

    settings = TorchSettings(variant, precision, args.graphs, args.device, max_batch)
    return TorchEngine(weights, family(model).spec(size), settings)


def flops_per_image(engine) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, 3, engine.spec.height, engine.spec.width), dtype=torch.uint8, device=engine.device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        engine.forward(x)
    return float(counter.get_total_flops())


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def time_calls(fn, device: str, min_seconds: float, min_calls: int) -> float:
    """Seconds per call, after two warm-up calls, over at least ``min_calls`` and ``min_seconds``."""
    for _ in range(2):
        fn()
    _sync(device)
    calls, t0 = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - t0 < min_seconds:
        fn()
        calls += 1
        if device == "cuda" and calls % 8 == 0:
            _sync(device)  # keep the queue bounded; the final sync below closes the timing
    _sync(device)
    return (time.perf_counter() - t0) / calls


def model_alone(model: str, variant: str, weights: Path, args) -> dict:
    import torch

    rows, flops = [], None
    for precision in args.precisions:
        engine = make_engine(model, variant, weights, args.size, precision, args, max(args.batches))
        if flops is None:
            flops = flops_per_image(engine)
        for batch in args.batches:
            rng = np.random.default_rng(batch)
            host = rng.integers(0, 256, (batch, 3, args.size, args.size), dtype=np.uint8)
            device_pixels = torch.from_numpy(host).to(engine.device)
            with torch.inference_mode():
                seconds = time_calls(lambda engine=engine, x=device_pixels: engine.run_device(x), args.device,
                                     args.seconds, args.min_calls)
            host_seconds = time_calls(lambda engine=engine, x=host: engine.run(x), args.device, args.seconds,
                                      args.min_calls)
            row = {"precision": precision, "batch": batch, "images_per_s": batch / seconds,
                   "ms_per_batch": seconds * 1000.0, "host_images_per_s": batch / host_seconds,
                   "fraction_of_ceiling": flops * batch / seconds / CEILING_FLOPS}
            rows.append(row)
            print(f"{variant} {precision} batch {batch}: {row['images_per_s']:.1f} img/s "
                  f"({row['fraction_of_ceiling']:.1%} of the ceiling), with transfers "
                  f"{row['host_images_per_s']:.1f} img/s", flush=True)
        del engine
        if args.device == "cuda":
            torch.cuda.empty_cache()
    return {"variant": variant, "size": args.size, "flops_per_image": flops, "rows": rows}


def precision_diff(model: str, variant: str, weights: Path, args) -> dict:
    from rmbg_backend.decode import decode_image
    from rmbg_backend.families import family
    from rmbg_backend.resize import to_model_pixels

    spec = family(model).spec(args.size)
    photos = eval_pairs()[: args.diff_photos]
    pixels = np.stack([to_model_pixels(decode_image(p.image.read_bytes()).rgb, spec) for p in photos])
    masks = {}
    for precision in PRECISIONS:
        engine = make_engine(model, variant, weights, args.size, precision, args, min(4, len(photos)))
        masks[precision] = engine.run(pixels)
        del engine
    out = {"photos": [p.id for p in photos]}
    for precision in ("fp16", "bf16"):
        per_image = np.abs(masks[precision] - masks["f32"]).reshape(len(photos), -1).mean(axis=1)
        out[precision] = {"mean_abs_diff": float(per_image.mean()), "max_per_image": float(per_image.max()),
                          "max_abs": float(np.abs(masks[precision] - masks["f32"]).max())}
        print(f"{variant} {precision} vs f32: mean |diff| {out[precision]['mean_abs_diff'] * 255:.3f}/255, "
              f"worst image {out[precision]['max_per_image'] * 255:.3f}/255", flush=True)
    return out


def test_image(size: int) -> bytes:
    """A real photo resized to size x size, as the JPEG a client would send."""
    photo = next(p for p in eval_pairs() if p.id.startswith("ecssd"))
    image = Image.open(photo.image).convert("RGB").resize((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def served(models: dict[str, str], args) -> dict:
    from rmbg_client import RmbgClient
    from rmbg_export.repository import RepositorySettings, build_repo
    from rmbg_server.launcher import ServerConfig, TritonServer

    repo = Path(tempfile.mkdtemp(prefix="rmbg-bench-gpu-"))
    settings = RepositorySettings(target="gpu-torch", precision=args.served_precision, device=args.device,
                                  graphs=args.graphs, max_batch=max(args.batches),
                                  pre_instances=args.pre_instances, post_instances=args.post_instances,
                                  engine_instances=args.engine_instances)
    for model, variant in models.items():
        build_repo(model, args.weights[model], settings, repo, size=args.size, variant=variant)
    log = Path(tempfile.gettempdir()) / "rmbg-bench-gpu-triton.log"
    server = TritonServer(ServerConfig.on_free_ports(repo), log_file=log)
    t0 = time.perf_counter()
    server.start(timeout=900)
    result = {"server_ready_s": time.perf_counter() - t0, "precision": args.served_precision,
              "instances": {"preprocess": args.pre_instances, "engine": args.engine_instances,
                            "postprocess": args.post_instances},
              "max_batch": max(args.batches), "input": f"{args.size}x{args.size} JPEG", "options": args.options,
              "models": {}}
    image = test_image(args.size)
    try:
        for model in models:
            clients = [RmbgClient(server.grpc_url, model=model) for _ in range(max(args.concurrency))]
            clients[0].remove(image, args.options)  # first request: lazy initialisations
            levels = []
            for concurrency in args.concurrency:
                levels.append(load_level(clients[:concurrency], image, args.options, args.requests_per_client))
                lv = levels[-1]
                print(f"served {model} concurrency {concurrency}: {lv['served_images_per_s']:.1f} img/s, "
                      f"p50 {lv['p50_ms']:.0f} ms, p99 {lv['p99_ms']:.0f} ms, steps {lv['steps_mean_ms']}", flush=True)
            result["models"][model] = levels
    finally:
        server.stop()
    return result


def load_level(clients, image: bytes, options: dict, per_client: int) -> dict:
    """Every client sends ``per_client`` requests back to back; wall time over all of them."""
    def worker(client) -> list[tuple[float, dict]]:
        out = []
        for _ in range(per_client):
            t0 = time.perf_counter()
            r = client.remove(image, options)
            out.append(((time.perf_counter() - t0) * 1000.0, r.info["timings"]))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(clients)) as pool:
        done = [x for chunk in pool.map(worker, clients) for x in chunk]
    wall = time.perf_counter() - t0
    ms = [m for m, _ in done]
    steps = {k: round(statistics.mean(t[k] for _, t in done), 2) for k in STEPS}
    return {"concurrency": len(clients), "requests": len(done), "served_images_per_s": len(done) / wall,
            **percentiles(ms), "steps_mean_ms": steps}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny variants, 64 px, a few calls: checks the script")
    ap.add_argument("--models", default="isnet,birefnet")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--batches", type=ints, default=[1, 4, 8, 16])
    ap.add_argument("--precisions", type=lambda s: s.split(","), default=list(PRECISIONS))
    ap.add_argument("--graphs", choices=["cuda-graphs", "compile", "none"], default="cuda-graphs")
    ap.add_argument("--concurrency", type=ints, default=[1, 4, 16, 64])
    ap.add_argument("--requests-per-client", type=int, default=16)
    ap.add_argument("--served-precision", default="fp16")
    ap.add_argument("--options", type=json.loads, default={},
                    help='OPTIONS of the served requests, e.g. \'{"outputFormat": "WEBP"}\' (default: PNG cut-out)')
    ap.add_argument("--pre-instances", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--post-instances", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--engine-instances", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0, help="least timed seconds per model-alone figure")
    ap.add_argument("--min-calls", type=int, default=10)
    ap.add_argument("--diff-photos", type=int, default=8)
    ap.add_argument("--isnet-weights", default="synthetic", help="weights SOURCE for IS-Net (e.g. imgly-isnet)")
    ap.add_argument("--birefnet-weights", default="synthetic")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: model,served,diff")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.smoke:
        args.size, args.batches, args.concurrency = 64, [1, 2], [1, 4]
        args.requests_per_client, args.seconds, args.min_calls, args.diff_photos = 2, 0.0, 2, 2
        args.pre_instances = args.post_instances = 1
        if args.device == "cpu":
            args.served_precision = "f32"
    args.weights = {"isnet": args.isnet_weights, "birefnet": args.birefnet_weights}
    if args.out is None:
        args.out = (ROOT / "perf" / "results" / "gpu_h100.json" if args.device == "cuda" and not args.smoke
                    else Path(tempfile.gettempdir()) / "bench_gpu_smoke.json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results_dir = (ROOT / "perf" / "results").resolve()
    if (args.device != "cuda" or args.smoke) and args.out.resolve().parent == results_dir:
        print(f"refusing to write {args.out}: only a full run on a GPU writes perf/results (use --out elsewhere)",
              file=sys.stderr)
        return 2
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device visible to torch: run with --device cpu --smoke to check the script", file=sys.stderr)
            return 2
    variants = SMOKE_VARIANTS if args.smoke else VARIANTS
    models = {m: variants[m] for m in args.models.split(",")}
    skip = set(filter(None, args.skip.split(",")))
    report = {"command": " ".join([sys.executable, *sys.argv]), "smoke": args.smoke, "device": args.device,
              "environment": environment(args.device), "ceiling_flops_per_s": CEILING_FLOPS,
              "settings": {"size": args.size, "graphs": args.graphs if args.device == "cuda" else "none",
                           "batches": args.batches, "weights": args.weights},
              "model_alone": {}, "precision_diff": {}}
    for model, variant in models.items():
        weights = weights_for(model, variant, args.weights[model])
        if "model" not in skip:
            report["model_alone"][model] = model_alone(model, variant, weights, args)
        if "diff" not in skip:
            report["precision_diff"][model] = precision_diff(model, variant, weights, args)
    if "served" not in skip:
        report["served"] = served(models, args)
        for model, levels in report["served"]["models"].items():
            alone = report["model_alone"].get(model, {}).get("rows", [])
            best = max((r["images_per_s"] for r in alone if r["precision"] == args.served_precision), default=None)
            report["served"].setdefault("served_over_model_alone", {})[model] = (
                max(lv["served_images_per_s"] for lv in levels) / best if best else None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
