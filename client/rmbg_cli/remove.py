"""``rmbg remove``: files, directories, URLs or stdin in, one cut-out per input, a progress bar, per-file errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from rmbg_backend.options import FLOAT_RANGES, INT_RANGES, MAX_CANVAS_SIDE, MAX_SHADOW_OFFSET, Options
from rmbg_cli import flag_types as ft
from rmbg_cli.endpoint import DEFAULT_HOST, DEFAULT_PORTS, EndpointError, server_for
from rmbg_cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from rmbg_cli.files import STDIO, Source, UsageError, collect_inputs, output_format, plan_outputs
from rmbg_client import RmbgClient, RmbgError, ServerUnavailableError
from rmbg_hosted.fetch import FetchPolicy

FORMATS = ("png", "webp", "jpg", "auto")
DEFAULTS = Options()  # the server's defaults, stated in --help; only flags given are sent
CLI_HINT = "allow the range with --allow-fetch-from CIDR"


def _range(key: str) -> str:
    lo, hi = INT_RANGES[key] if key in INT_RANGES else FLOAT_RANGES[key]
    return f"{lo:g}..{hi:g}"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from rmbg_backend.families import FAMILIES

    r = sub.add_parser("remove", help="remove backgrounds of files, directories, URLs or stdin",
                       description="Remove backgrounds. Without --url, uses the server at "
                       f"{DEFAULT_HOST}:{DEFAULT_PORTS['grpc']} or, when nothing answers there, starts one for "
                       "this run from --model-repository.")
    r.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, directories (searched recursively), http(s) URLs, or - for stdin")
    r.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output directory; a file name (.png, .webp, .jpg) for one input; - for stdout (required)")
    r.add_argument("--url", type=ft.triton_address, metavar="HOST:PORT",
                   help="Triton's gRPC address (its HTTP one with --protocol http), not the gateway's URL "
                   f"(default: {DEFAULT_HOST}:{DEFAULT_PORTS['grpc']}, or :{DEFAULT_PORTS['http']} for http; "
                   "a server is started for the run if nothing answers there)")
    r.add_argument("--model-repository", type=Path, default=Path("model_repository"), metavar="DIR",
                   help="where a server started for this run finds its models, as 'rmbg build-repo' or "
                   "make repo writes them (default: %(default)s)")
    r.add_argument("--protocol", choices=["grpc", "http"], default="grpc",
                   help="how to talk to Triton (default: %(default)s)")
    r.add_argument("--model", choices=list(FAMILIES), default="isnet", help="model family (default: %(default)s)")
    r.add_argument("--format", choices=FORMATS, default=None,
                   help="output format; auto: PNG with transparency, else JPG "
                   "(default: the -o file's extension, else png)")
    r.add_argument("--quality", type=ft.option("outputQuality"), metavar="N",
                   help=f"WEBP/JPG quality, {_range('outputQuality')} (default: {DEFAULTS.outputQuality})")
    r.add_argument("--mask-only", action="store_true", help="write the 8-bit mask instead (default: off)")
    r.add_argument("--bg-color", type=ft.rgba, metavar="R,G,B,A",
                   help="background colour, each 0..255 (default: none, transparent; JPG: white)")
    r.add_argument("--bg-image", type=ft.readable_file, metavar="PATH",
                   help="image scaled to cover and put behind the subject (default: none)")
    r.add_argument("--alpha-matting", action="store_true", help="refine the edge by alpha matting (default: off)")
    r.add_argument("--fg-threshold", type=ft.option("alphaMattingForegroundThreshold"), metavar="N",
                   help=f"alpha matting: sure foreground above this, {_range('alphaMattingForegroundThreshold')} "
                   f"(default: {DEFAULTS.alphaMattingForegroundThreshold})")
    r.add_argument("--bg-threshold", type=ft.option("alphaMattingBackgroundThreshold"), metavar="N",
                   help=f"alpha matting: sure background below this, {_range('alphaMattingBackgroundThreshold')} "
                   f"(default: {DEFAULTS.alphaMattingBackgroundThreshold})")
    r.add_argument("--erode-size", type=ft.option("alphaMattingErodeSize"), metavar="N",
                   help=f"alpha matting: trimap erosion in pixels, {_range('alphaMattingErodeSize')} "
                   f"(default: {DEFAULTS.alphaMattingErodeSize})")
    r.add_argument("--post-process-mask", action="store_true",
                   help="smooth and binarise the mask, as rembg's post_process_mask (default: off)")
    r.add_argument("--preserve-alpha", action="store_true",
                   help="keep the input's own transparency where it is lower (default: off)")
    r.add_argument("--high-quality", action="store_true",
                   help="a second model pass on the subject and crisp anti-aliased edges, about twice the time "
                   "(default: off)")
    shaping = r.add_argument_group("output shaping")
    shaping.add_argument("--crop", action="store_true", help="crop to the subject's bounding box (default: off)")
    shaping.add_argument("--crop-margin", type=ft.crop_margin, metavar="PX|N%",
                         help="margin around the subject when cropping: pixels (30) or a share of the box (10%%) "
                         f"(default: {DEFAULTS.cropMargin})")
    shaping.add_argument("--output-size", type=ft.output_size, metavar="WxH",
                         help=f"canvas size, e.g. 1024x1024, each 1..{MAX_CANVAS_SIDE} "
                         "(default: the crop box, else the input size)")
    shaping.add_argument("--scale", type=ft.option("scale"), metavar="S",
                         help="subject box as a share of the canvas, above 0 up to 1 (default: fit the region)")
    shaping.add_argument("--position", type=ft.position, metavar="center|original|X%,Y%",
                         help="where the subject sits on the canvas (default: center)")
    shaping.add_argument("--shadow", action="store_true", help="soft drop shadow cast from the mask (default: off)")
    shaping.add_argument("--shadow-opacity", type=ft.option("shadowOpacity"), metavar="O",
                         help=f"shadow opacity, {_range('shadowOpacity')} (default: {DEFAULTS.shadowOpacity:g})")
    shaping.add_argument("--shadow-blur", type=ft.option("shadowBlur"), metavar="PX",
                         help=f"blur radius in output pixels, {_range('shadowBlur')} "
                         f"(default: {DEFAULTS.shadowBlur:g})")
    shaping.add_argument("--shadow-offset", type=ft.shadow_offset, metavar="DX,DY",
                         help=f"shadow offset in output pixels, each -{MAX_SHADOW_OFFSET}..{MAX_SHADOW_OFFSET}; "
                         "a negative one as --shadow-offset=-4,12 "
                         f"(default: {','.join(str(v) for v in DEFAULTS.shadowOffset)})")
    shaping.add_argument("--refine-foreground", action="store_true",
                         help="estimate edge colours so no old background shows through (default: off)")
    r.add_argument("--allow-fetch-from", action="append", default=[], type=ft.cidr, metavar="CIDR",
                   help="let URL inputs reach this non-public range, e.g. 10.0.0.0/8, repeatable "
                   "(default: public addresses only)")
    r.add_argument("--concurrency", type=ft.positive_int, default=2, metavar="N",
                   help="requests in flight at once (default: %(default)s)")
    r.add_argument("--timeout", type=ft.positive_float, default=300.0, metavar="S",
                   help="seconds per image (default: %(default)g)")
    return r


def options_from_args(a: argparse.Namespace) -> dict:
    """Map flags to OPTIONS names; only flags given are sent, the server owns the defaults."""
    opts: dict = {"outputFormat": (a.format or "png").upper()}
    pairs = [("outputQuality", a.quality), ("alphaMattingForegroundThreshold", a.fg_threshold),
             ("alphaMattingBackgroundThreshold", a.bg_threshold), ("alphaMattingErodeSize", a.erode_size),
             ("rgba", a.bg_color), ("cropMargin", a.crop_margin), ("outputSize", a.output_size),
             ("scale", a.scale), ("position", a.position), ("shadowOpacity", a.shadow_opacity),
             ("shadowBlur", a.shadow_blur), ("shadowOffset", a.shadow_offset)]
    opts.update({k: v for k, v in pairs if v is not None})
    for key, flag in (("returnOnlyMask", a.mask_only), ("alphaMatting", a.alpha_matting),
                      ("postProcessMask", a.post_process_mask), ("preserveAlpha", a.preserve_alpha),
                      ("crop", a.crop), ("shadow", a.shadow), ("refineForeground", a.refine_foreground),
                      ("highQuality", a.high_quality)):
        if flag:
            opts[key] = True
    return opts


def _failure(result: RmbgError) -> str:
    if isinstance(result, ServerUnavailableError):
        return f"server unavailable: {result}"
    return str(result)


def run(a: argparse.Namespace) -> int:
    try:
        a.format = output_format(a.output, a.format)
        inputs = collect_inputs(a.inputs)
        if not inputs:
            raise UsageError("no image files found in the inputs")
        dests = plan_outputs(a.inputs, inputs, a.output, a.format)
        if a.output == STDIO and sys.stdout.isatty():
            raise UsageError("-o - would write image bytes to the terminal; redirect or pipe standard output")
        background = a.bg_image.read_bytes() if a.bg_image is not None else None
    except (UsageError, FileNotFoundError) as exc:
        print(f"rmbg remove: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"rmbg remove: --bg-image: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with server_for(a.url, a.protocol, a.model, a.model_repository) as url:
            return _remove_all(a, url, inputs, dests, background)
    except EndpointError as exc:
        print(f"rmbg remove: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rmbg remove: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _remove_all(a: argparse.Namespace, url: str, inputs: list[tuple[Source, Path]],
                dests: dict[Source, Path | None], background: bytes | None) -> int:
    from tqdm import tqdm

    client = RmbgClient(url, a.protocol, a.model, timeout=a.timeout,
                        fetch_policy=FetchPolicy.allowing(a.allow_fetch_from, hint=CLI_HINT))
    options = options_from_args(a)
    one_file = list(dests.values()) == [Path(a.output)]  # before --format auto renames it
    failures: list[tuple[Source, str]] = []

    def items() -> Iterator[tuple[Source, bytes | str]]:
        for src, _ in inputs:
            if isinstance(src, str):  # a URL (the client fetches it under fetch_policy) or "-"
                yield src, sys.stdin.buffer.read() if src == STDIO else src
                continue
            try:
                yield src, src.read_bytes()
            except OSError as exc:
                failures.append((src, str(exc)))

    try:
        with tqdm(total=len(inputs), unit="img", desc="removing backgrounds") as bar:
            for src, result in client.remove_many(items(), options, concurrency=a.concurrency,
                                                  background=background):
                if isinstance(result, RmbgError):
                    failures.append((src, _failure(result)))
                else:
                    _write(result, src, dests, a.format == "auto", failures)
                bar.update(1)
    finally:
        client.close()
    ok = len(inputs) - len(failures)
    for src, msg in failures:
        print(f"FAILED {src}: {msg}", file=sys.stderr)
    where = ("standard output" if a.output == STDIO else dests[inputs[0][0]] if one_file
             else f"{a.output.rstrip('/')}/")
    print(f"{ok} of {len(inputs)} written to {where}" + (f"; {len(failures)} failed" if failures else ""),
          file=sys.stderr if a.output == STDIO else sys.stdout)  # stdout may be the image itself
    return EXIT_FAILED if failures else EXIT_OK


def _write(result, src: Source, dests: dict[Source, Path | None], auto: bool,
           failures: list[tuple[Source, str]]) -> None:
    dest = dests[src]
    if dest is None:
        sys.stdout.buffer.write(result.data)
        sys.stdout.buffer.flush()
        return
    if auto:  # named by what the server chose: PNG or JPG
        dest = dests[src] = dest.with_suffix(f".{result.extension}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(result.data)
    except OSError as exc:
        failures.append((src, f"cannot write {dest}: {exc.strerror or exc}"))
