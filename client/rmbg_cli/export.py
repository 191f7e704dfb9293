"""``rmbg export``: our PyTorch definition with official weights -> a verified ONNX file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rmbg_backend.families import all_variants
from rmbg_cli.exits import EXIT_FAILED, EXIT_OK
from rmbg_cli.extras import require


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    e = sub.add_parser("export", help="export a PyTorch model to ONNX (dynamic batch), verified against PyTorch")
    e.add_argument("--model", choices=all_variants(), required=True,
                   help="a variant; *-tiny: small test variants without official weights (required)")
    e.add_argument("--weights", required=True, help="hf:<repo> | synthetic | path to .pth/.safetensors (required)")
    e.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.onnx", help="the ONNX file (required)")
    e.add_argument("--fp16", action="store_true",
                   help="matrix products in fp16, normalisation in fp32 (default: off, float32)")
    e.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=[1024, 1024],
                   help="model input height and width (default: 1024 1024)")
    e.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or later (default: %(default)s)")
    return e


def run(a: argparse.Namespace) -> int:
    export = require("rmbg_export.export", "export", "export", needs=("torch", "onnx", "onnxruntime"))
    sources = require("rmbg_export.sources", "export", "export")
    verify = require("rmbg_export.verify", "export", "export")
    try:
        report = export.export_variant(a.model, a.weights, a.output, tuple(a.size), opset=a.opset, fp16=a.fp16)
    except verify.VerificationError as exc:
        print(f"rmbg export: the exported graph does not match PyTorch: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (sources.SourceError, RuntimeError, ValueError) as exc:
        print(f"rmbg export: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {a.output}: " + ", ".join(f"{k}={v:.3g}" for k, v in report.items()))
    return EXIT_OK
