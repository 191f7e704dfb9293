"""``rmbg remove``: files and directories in, one cut-out per input, a progress bar, per-file errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from rmbg_cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from rmbg_cli.files import collect_inputs, output_paths
from rmbg_client import RmbgClient, RmbgError, ServerUnavailableError

FORMATS = ("png", "webp", "jpg", "auto")


def _rgba_arg(text: str) -> list[int]:
    parts = text.split(",")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"expected R,G,B,A (4 integers 0..255), got {text!r}")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers in R,G,B,A, got {text!r}") from None


def _int_pair_arg(separators: str, what: str):
    def parse(text: str) -> list[int]:
        for sep in separators:
            parts = text.split(sep)
            if len(parts) == 2:
                try:
                    return [int(p) for p in parts]
                except ValueError:
                    break
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return parse


def _margin_arg(text: str) -> int | str:
    """30 -> 30 (pixels); "30px" and "10%" go to the server as written (it validates them)."""
    return int(text) if text.isdigit() else text


def _position_arg(text: str) -> str | list[str]:
    if text in ("center", "original"):
        return text
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected center, original or X%,Y% (e.g. 50%,100%), got {text!r}")
    return [p if p.endswith("%") else f"{p}%" for p in parts]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from rmbg_backend.families import FAMILIES

    r = sub.add_parser("remove", help="remove backgrounds of files or directories")
    r.add_argument("inputs", nargs="+", help="image files or directories (searched recursively)")
    r.add_argument("-o", "--output", required=True, type=Path, help="output directory (or file for one input)")
    r.add_argument("--url", default=None, help="HOST:PORT (default 127.0.0.1:8001 grpc, :8000 http)")
    r.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    r.add_argument("--model", choices=list(FAMILIES), default="isnet")
    r.add_argument("--format", choices=FORMATS, default="png")
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
    shaping = r.add_argument_group("output shaping")
    shaping.add_argument("--crop", action="store_true", help="crop to the subject's bounding box")
    shaping.add_argument("--crop-margin", type=_margin_arg, metavar="PX|N%",
                         help="margin around the subject when cropping: pixels (30) or a share of the box (10%%)")
    shaping.add_argument("--output-size", type=_int_pair_arg("x,", "WIDTHxHEIGHT"), metavar="WxH",
                         help="canvas size, e.g. 1024x1024")
    shaping.add_argument("--scale", type=float, help="subject box as a share of the canvas, 0..1")
    shaping.add_argument("--position", type=_position_arg, metavar="center|original|X%,Y%")
    shaping.add_argument("--shadow", action="store_true", help="soft drop shadow cast from the mask")
    shaping.add_argument("--shadow-opacity", type=float, help="0..1 (0.5)")
    shaping.add_argument("--shadow-blur", type=float, help="blur radius in output pixels, 0..500 (20)")
    shaping.add_argument("--shadow-offset", type=_int_pair_arg(",", "DX,DY"), metavar="DX,DY",
                         help="shadow offset in output pixels (0,10); a negative one as --shadow-offset=-4,12")
    shaping.add_argument("--refine-foreground", action="store_true",
                         help="estimate edge colours so no old background shows through")
    r.add_argument("--concurrency", type=int, default=2)
    r.add_argument("--timeout", type=float, default=300.0, help="seconds per image")
    return r


def options_from_args(a: argparse.Namespace) -> dict:
    """Map flags to OPTIONS names; only flags given are sent, the server owns the defaults."""
    opts: dict = {"outputFormat": a.format.upper()}
    pairs = [("outputQuality", a.quality), ("alphaMattingForegroundThreshold", a.fg_threshold),
             ("alphaMattingBackgroundThreshold", a.bg_threshold), ("alphaMattingErodeSize", a.erode_size),
             ("rgba", a.bg_color), ("cropMargin", a.crop_margin), ("outputSize", a.output_size),
             ("scale", a.scale), ("position", a.position), ("shadowOpacity", a.shadow_opacity),
             ("shadowBlur", a.shadow_blur), ("shadowOffset", a.shadow_offset)]
    opts.update({k: v for k, v in pairs if v is not None})
    for key, flag in (("returnOnlyMask", a.mask_only), ("alphaMatting", a.alpha_matting),
                      ("postProcessMask", a.post_process_mask), ("preserveAlpha", a.preserve_alpha),
                      ("crop", a.crop), ("shadow", a.shadow), ("refineForeground", a.refine_foreground)):
        if flag:
            opts[key] = True
    return opts


def run(a: argparse.Namespace) -> int:
    from tqdm import tqdm

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
    single_file = len(inputs) == 1 and a.output.suffix.lower() in (".png", ".webp", ".jpg", ".jpeg")
    dests = {inputs[0][0]: a.output} if single_file else output_paths(inputs, a.output, a.format)
    url = a.url or ("127.0.0.1:8001" if a.protocol == "grpc" else "127.0.0.1:8000")
    client = RmbgClient(url, a.protocol, a.model, timeout=a.timeout)
    if not client.ready():
        print(f"rmbg remove: the server at {url} ({a.protocol}) is not reachable or the {a.model} model "
              "is not ready; start it with 'rmbg serve' (or 'rmbg up')", file=sys.stderr)
        return EXIT_USAGE
    options = options_from_args(a)
    failures: list[tuple[Path, str]] = []

    def items() -> Iterator[tuple[Path, bytes]]:
        for src, _ in inputs:
            try:
                yield src, src.read_bytes()
            except OSError as exc:
                failures.append((src, str(exc)))

    with tqdm(total=len(inputs), unit="img", desc="removing backgrounds") as bar:
        for src, result in client.remove_many(items(), options, concurrency=a.concurrency, background=background):
            if isinstance(result, ServerUnavailableError):
                failures.append((src, f"server unavailable: {result}"))
            elif isinstance(result, RmbgError):
                failures.append((src, str(result)))
            else:
                dest = dests[src]
                if a.format == "auto":  # named by what the server chose: PNG or JPG
                    dest = dest.with_suffix(f".{result.extension}")
                    dests[src] = dest
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(result.data)
            bar.update(1)
    client.close()
    ok = len(inputs) - len(failures)
    for src, msg in failures:
        print(f"FAILED {src}: {msg}", file=sys.stderr)
    where = dests[inputs[0][0]] if single_file else f"{a.output}/"
    print(f"{ok} of {len(inputs)} written to {where}" + (f"; {len(failures)} failed" if failures else ""))
    return EXIT_FAILED if failures else EXIT_OK
