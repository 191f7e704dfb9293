"""``rmbg build-repo``: weights SOURCE -> engine for a target -> the ``rmbg_<model>`` ensemble.

Every setting of the generated configs is a flag here, so nobody edits generated files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rmbg_backend.contract import PRECISIONS, TARGET_PRECISIONS, TARGETS, TORCH_DEVICES, TORCH_GRAPH_MODES
from rmbg_backend.families import FAMILIES, all_variants
from rmbg_cli.exits import EXIT_FAILED, EXIT_OK
from rmbg_cli.extras import require
from rmbg_cli.flag_types import positive_int

DEFAULT_MAX_BATCH = 4
GPU_TORCH_MAX_BATCH = 16  # a GPU needs batches to fill it; 16 x 1024^2 fits every variant in fp16


def default_step_instances() -> int:
    """Pre/post instances per model: half the cores (the engine takes the rest), at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    b = sub.add_parser("build-repo", help="fetch/convert weights and write the model repository")
    b.add_argument("--model", choices=list(FAMILIES), required=True, help="model family to build (required)")
    b.add_argument("--weights", required=True,
                   help="imgly-isnet | hf:<repo> | synthetic | path to .onnx/.pth/.safetensors (required)")
    b.add_argument("--target", choices=TARGETS, default="cpu", help="where the engine runs (default: %(default)s)")
    b.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="engine precision; each target offers some (default: the target's first: "
                   + "; ".join(f"{t} {'|'.join(p)}" for t, p in TARGET_PRECISIONS.items()) + ")")
    b.add_argument("--variant", choices=all_variants(),
                   help="PyTorch definition for PyTorch weights (default: follows the checkpoint)")
    b.add_argument("--out", type=Path, default=Path("model_repository"), metavar="DIR",
                   help="the model repository to write (default: %(default)s)")
    b.add_argument("--size", type=int, help="model input size (default: 1024; tests use smaller)")
    b.add_argument("--max-batch", type=positive_int, default=None,
                   help=f"largest dynamic batch (default: {DEFAULT_MAX_BATCH}, {GPU_TORCH_MAX_BATCH} for gpu-torch)")
    b.add_argument("--pre-instances", type=positive_int, default=default_step_instances(),
                   help="preprocess instances (default: half the cores)")
    b.add_argument("--post-instances", type=positive_int, default=default_step_instances(),
                   help="postprocess instances (default: half the cores)")
    b.add_argument("--engine-instances", type=positive_int, default=1,
                   help="segmentation engine instances (default: %(default)s)")
    b.add_argument("--threads", type=int, default=0,
                   help="CPU engine threads per instance, 0: all cores (default: %(default)s)")
    b.add_argument("--cpu-engine", choices=["auto", "openvino", "onnxruntime"], default="auto",
                   help="CPU engine; auto: OpenVINO where installed (default: %(default)s)")
    b.add_argument("--graphs", choices=TORCH_GRAPH_MODES, default=TORCH_GRAPH_MODES[0],
                   help="gpu-torch: one CUDA graph per batch size, torch.compile, or eager (on a CPU: eager) "
                        "(default: %(default)s)")
    b.add_argument("--device", choices=TORCH_DEVICES, default=TORCH_DEVICES[0],
                   help="gpu-torch: run torch on the GPU, or on the CPU (tests and machines without a GPU) "
                        "(default: %(default)s)")
    b.add_argument("--max-input-mb", type=float, help="largest encoded input (default: 50)")
    b.add_argument("--max-megapixels", type=float, help="largest decoded image (default: 50)")
    b.add_argument("--max-side", type=int, help="longest decoded side in pixels (default: 30000)")
    b.add_argument("--max-output-mb", type=float, help="largest encoded result (default: 200)")
    return b


def limits_from_args(a: argparse.Namespace, limits_type: type) -> object:
    """Only the limits given on the command line override the library's defaults."""
    given = {"max_bytes": a.max_input_mb and int(a.max_input_mb * 1024 * 1024),
             "max_pixels": a.max_megapixels and int(a.max_megapixels * 1_000_000),
             "max_side": a.max_side,
             "max_output_bytes": a.max_output_mb and int(a.max_output_mb * 1024 * 1024)}
    return limits_type(**{k: v for k, v in given.items() if v})


def run(a: argparse.Namespace) -> int:
    repository = require("rmbg_export.repository", "export", "build-repo", needs=("onnx", "onnxruntime"))
    sources = require("rmbg_export.sources", "export", "build-repo")
    settings = repository.RepositorySettings(
        target=a.target, precision=a.precision or TARGET_PRECISIONS[a.target][0],
        max_batch=a.max_batch or (GPU_TORCH_MAX_BATCH if a.target == "gpu-torch" else DEFAULT_MAX_BATCH),
        pre_instances=a.pre_instances, post_instances=a.post_instances,
        engine_instances=a.engine_instances, threads=a.threads, cpu_engine=a.cpu_engine,
        limits=limits_from_args(a, require("rmbg_backend.decode", "export", "build-repo").Limits), graphs=a.graphs,
        device=a.device,
    )
    try:
        result = repository.build_repo(a.model, a.weights, settings, a.out, size=a.size, variant=a.variant)
    except (sources.SourceError, RuntimeError, ValueError) as exc:
        print(f"rmbg build-repo: {exc}", file=sys.stderr)
        return EXIT_FAILED
    banner = "=" * 78
    print(f"{banner}\nweights: {result.source}\nlicence: {result.licence}\n{banner}")
    print(f"wrote {len(result.written)} files under {a.out}/ ({a.model}, target {a.target}, "
          f"precision {settings.precision})")
    if result.synthetic:
        print("WARNING: synthetic weights: this repository produces meaningless masks (tests and speed runs only).")
    return EXIT_OK
