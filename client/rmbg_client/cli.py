"""``rmbg``: serve, build-repo, export, remove.

The client part (``remove``) needs only the base install; ``serve``, ``build-repo`` and
``export`` import the server/export extras lazily and say which extra is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _rgba_arg(text: str) -> list[int]:
    parts = text.split(",")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"expected R,G,B,A (4 integers 0..255), got {text!r}")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers in R,G,B,A, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rmbg", description="Self-hosted background removal on Triton.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="start Triton with the model repository (Ctrl-C stops)")
    s.add_argument("--model-repository", default="model_repository", type=Path)
    s.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--metrics-port", type=int, default=8002)
    s.add_argument("--log-file", type=Path, help="write the server log here instead of the terminal")

    b = sub.add_parser("build-repo", help="fetch/convert weights and write the model repository")
    b.add_argument("--model", choices=["isnet", "birefnet"], required=True)
    b.add_argument("--weights", required=True,
                   help="imgly-isnet | hf:<repo> | synthetic | path to .onnx/.pth/.safetensors")
    b.add_argument("--target", choices=["cpu", "gpu-trt", "gpu-ort"], default="cpu")
    b.add_argument("--out", type=Path, default=Path("model_repository"))
    b.add_argument("--size", type=int, help="model input size (default 1024; tests use smaller)")
    b.add_argument("--max-batch", type=int, default=4)
    b.add_argument("--variant", help="definition for PyTorch weights: birefnet | birefnet-lite | *-tiny "
                   "(default: follows the checkpoint; synthetic: the full model)")

    e = sub.add_parser("export", help="export a PyTorch model to ONNX (dynamic batch)")
    e.add_argument("--model", choices=["isnet", "birefnet", "birefnet-lite", "isnet-tiny", "birefnet-tiny"],
                   required=True, help="*-tiny: small test variants without official weights")
    e.add_argument("--weights", required=True)
    e.add_argument("-o", "--output", type=Path, required=True)
    e.add_argument("--fp16", action="store_true")
    e.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=[1024, 1024])
    e.add_argument("--opset", type=int, default=17)

    r = sub.add_parser("remove", help="remove backgrounds of files or directories")
    r.add_argument("inputs", nargs="+", help="image files or directories (searched recursively)")
    r.add_argument("-o", "--output", required=True, type=Path, help="output directory (or file for one input)")
    r.add_argument("--url", default=None, help="HOST:PORT (default 127.0.0.1:8001 grpc, :8000 http)")
    r.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    r.add_argument("--model", choices=["isnet", "birefnet"], default="isnet")
    r.add_argument("--format", choices=["png", "webp", "jpg"], default="png")
    r.add_argument("--quality", type=int)
    r.add_argument("--mask-only", action="store_true")
    r.add_argument("--bg-color", type=_rgba_arg, metavar="R,G,B,A")
    r.add_argument("--bg-image", type=Path)
    r.add_argument("--alpha-matting", action="store_true")
    r.add_argument("--fg-threshold", type=int)
    r.add_argument("--bg-threshold", type=int)
    r.add_argument("--erode-size", type=int)
    r.add_argument("--post-process-mask", action="store_true")
    r.add_argument("--preserve-alpha", action="store_true")
    r.add_argument("--concurrency", type=int, default=2)
    r.add_argument("--timeout", type=float, default=300.0, help="seconds per image")
    return p


def options_from_args(a: argparse.Namespace) -> dict:
    """Map flags to OPTIONS names; only flags given are sent, the server owns the defaults."""
    opts: dict = {"outputFormat": a.format.upper()}
    pairs = [("outputQuality", a.quality), ("alphaMattingForegroundThreshold", a.fg_threshold),
             ("alphaMattingBackgroundThreshold", a.bg_threshold), ("alphaMattingErodeSize", a.erode_size),
             ("rgba", a.bg_color)]
    opts.update({k: v for k, v in pairs if v is not None})
    for key, flag in (("returnOnlyMask", a.mask_only), ("alphaMatting", a.alpha_matting),
                      ("postProcessMask", a.post_process_mask), ("preserveAlpha", a.preserve_alpha)):
        if flag:
            opts[key] = True
    return opts


def cmd_remove(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rmbg_client.client import RmbgClient, RmbgError, ServerUnavailableError
    from rmbg_client.files import collect_inputs, output_paths

    try:
        inputs = collect_inputs(a.inputs)
    except FileNotFoundError as exc:
        print(f"rmbg remove: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not inputs:
        print("rmbg remove: no image files found in the inputs", file=sys.stderr)
        return EXIT_USAGE
    background = None
    if a.bg_image is not None:
        try:
            background = a.bg_image.read_bytes()
        except OSError as exc:
            print(f"rmbg remove: --bg-image: {exc}", file=sys.stderr)
            return EXIT_USAGE
    ext = a.format
    single_file = len(inputs) == 1 and a.output.suffix.lower() in (".png", ".webp", ".jpg", ".jpeg")
    dests = {inputs[0][0]: a.output} if single_file else output_paths(inputs, a.output, ext)
    url = a.url or ("127.0.0.1:8001" if a.protocol == "grpc" else "127.0.0.1:8000")
    client = RmbgClient(url, a.protocol, a.model, timeout=a.timeout)
    if not client.ready():
        print(f"rmbg remove: the server at {url} ({a.protocol}) is not reachable or rmbg_{a.model} "
              "is not ready; start it with 'rmbg serve'", file=sys.stderr)
        return EXIT_USAGE
    options = options_from_args(a)
    failures: list[tuple[Path, str]] = []

    def items():
        for src, _ in inputs:
            try:
                yield src, src.read_bytes()
            except OSError as exc:
                failures.append((src, str(exc)))

    with tqdm(total=len(inputs), unit="img", desc="removing backgrounds") as bar:
        for src, result in client.remove_many(items(), options, concurrency=a.concurrency,
                                              background=background):
            if isinstance(result, ServerUnavailableError):
                failures.append((src, f"server unavailable: {result}"))
            elif isinstance(result, RmbgError):
                failures.append((src, str(result)))
            else:
                dest = dests[src]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(result.data)
            bar.update(1)
    client.close()
    ok = len(inputs) - len(failures)
    for src, msg in failures:
        print(f"FAILED {src}: {msg}", file=sys.stderr)
    where = a.output if single_file else f"{a.output}/"
    print(f"{ok} of {len(inputs)} written to {where}" + (f"; {len(failures)} failed" if failures else ""))
    return EXIT_FAILED if failures else EXIT_OK


def cmd_serve(a: argparse.Namespace) -> int:
    import signal
    import threading

    try:
        from rmbg_server.launcher import LaunchError, ServerConfig, TritonServer
        from rmbg_server.watchdog import StubWatchdog
    except ImportError as exc:
        print(f"rmbg serve needs the server extra: pip install 'rmbg-triton[server]' ({exc})", file=sys.stderr)
        return EXIT_USAGE
    cfg = ServerConfig(a.model_repository, a.host, a.http_port, a.grpc_port, a.metrics_port)
    try:
        server = TritonServer(cfg, log_file=a.log_file)
        print(f"starting Triton ({server.install.binary}) on {a.host} ...", flush=True)
        server.start()
    except LaunchError as exc:
        print(f"rmbg serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    assert server.process is not None
    watchdog = StubWatchdog(server.process.pid, cfg.model_repository, server.reload)
    watchdog.start()
    models = [m["name"] for m in server.models() if m.get("state") == "READY"]
    print(f"ready: gRPC {server.grpc_url}  HTTP {server.http_url}  metrics http://{a.host}:{a.metrics_port}/metrics")
    print(f"models: {', '.join(sorted(models))}")
    print("Ctrl-C to stop", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if server.process.poll() is not None:
            print(f"rmbg serve: tritonserver exited with code {server.process.returncode}", file=sys.stderr)
            watchdog.stop()
            return EXIT_FAILED
    print("stopping...", flush=True)
    watchdog.stop()
    code = server.stop()
    print(f"stopped (exit code {code})")
    return EXIT_OK


def cmd_build_repo(a: argparse.Namespace) -> int:
    try:
        from rmbg_export.build import build_repo
        from rmbg_export.sources import SourceError
    except ImportError as exc:
        print(f"rmbg build-repo needs the server extra: pip install 'rmbg-triton[server]' ({exc})", file=sys.stderr)
        return EXIT_USAGE
    try:
        build_repo(a.model, a.weights, a.target, a.out, a.size, a.max_batch, a.variant)
    except (SourceError, RuntimeError, ValueError) as exc:
        print(f"rmbg build-repo: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_export(a: argparse.Namespace) -> int:
    try:
        from rmbg_export.export_onnx import export_cli
    except ImportError as exc:
        print(f"rmbg export needs the export extra: pip install 'rmbg-triton[export]' ({exc})", file=sys.stderr)
        return EXIT_USAGE
    return export_cli(a)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"remove": cmd_remove, "serve": cmd_serve, "build-repo": cmd_build_repo,
               "export": cmd_export}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
