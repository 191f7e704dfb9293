"""Engine builders: weights SOURCE -> the servable ONNX -> the engine file a target loads.

The servable ONNX (float32, one ``mask`` output, dynamic batch, provenance in its metadata)
is the hub: published ONNX files go through their family's conversion hook, PyTorch weights
through our definitions and ``rmbg export``. ``gpu-trt`` then builds a TensorRT plan with the
TensorRT Python API where TensorRT and a GPU exist (the NGC container, a GPU machine);
elsewhere it refuses with a message saying so and never writes a placeholder engine. The
plan is written without any header, so Triton's ``tensorrt_plan`` platform loads it as is.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path
from typing import Any

from rmbg_backend.contract import ENGINE_INPUT
from rmbg_backend.families import Family, ModelSpec
from rmbg_export import metadata
from rmbg_export.cache import cache_dir, file_digest, human_size
from rmbg_export.engine_key import detect_gpus, slug
from rmbg_export.sources import SourceError, Weights
from rmbg_export.verify import check_onnx

log = logging.getLogger(__name__)


def _conversion_hook(fam: Family):
    module, _, function = (fam.onnx_conversion or "").partition(":")
    return getattr(importlib.import_module(module), function)


def servable_onnx(fam: Family, weights: Weights, spec: ModelSpec, variant: str | None = None) -> Path:
    """The verified, stamped float32 ONNX for ``weights`` (built once, cached by content hash)."""
    if weights.kind != "onnx":
        from rmbg_export.export import cached_export  # needs torch

        return cached_export(fam.name, weights, spec, variant)
    assert weights.path is not None
    if fam.onnx_conversion is None:
        metadata.check_matches(weights.path, spec)  # only our own exports are servable as they are
        return weights.path
    digest = file_digest(weights.path)
    target = cache_dir() / "converted" / f"{fam.name}-{digest[:16]}-{spec.height}x{spec.width}-fp32.onnx"
    if target.exists():
        log.info("using converted engine %s (cached)", target)
        return target
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s to a float32, single-output, dynamic-batch graph...", weights.path)
    model = _conversion_hook(fam)(onnx.load(str(weights.path)))
    model = metadata.stamp(model, metadata.provenance(spec, weights.source, weights.licence, weights.path,
                                                      {"rmbg.precision": "f32"}))
    tmp = target.with_suffix(".part")
    onnx.save(model, str(tmp))
    check_onnx(tmp, spec.height, spec.width, source=weights.path)
    tmp.replace(target)
    return target


# Layers kept in float32 inside an FP16 engine: Swin's LayerNorm overflows in half precision,
# softmax and reductions need the range. TensorRT layer types are matched by their enum member
# name (``layer.type.name``: ``SOFTMAX``; ``str(layer.type)`` is ``LayerType.SOFTMAX``), and the
# ONNX node names TensorRT keeps as layer names catch LayerNorm exported as decomposed ops.
FP32_LAYER_TYPES = frozenset({"SOFTMAX", "NORMALIZATION", "REDUCE"})
FP32_NAME_HINTS = ("LayerNorm", "layer_norm", "LayerNormalization", "Softmax", "softmax")


def _type_name(layer_type: Any) -> str:
    """``SOFTMAX`` for ``trt.LayerType.SOFTMAX`` (pybind11 enums have ``.name``, as Python enums do)."""
    name = getattr(layer_type, "name", None)
    return name if isinstance(name, str) else str(layer_type).rsplit(".", 1)[-1]


def keeps_fp32(layer_name: str, layer_type: Any) -> bool:
    """Whether a layer must run in float32 inside a reduced-precision engine."""
    return _type_name(layer_type) in FP32_LAYER_TYPES or any(h in layer_name for h in FP32_NAME_HINTS)


def pin_fp32_layers(network: Any, float32: Any) -> list[str]:
    """Set precision and output types of the layers ``keeps_fp32`` selects; returns their names.

    ``network`` is a ``tensorrt.INetworkDefinition`` and ``float32`` is ``tensorrt.float32``;
    both are passed in so this runs (and is tested) without TensorRT.
    """
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if keeps_fp32(layer.name, layer.type):
            layer.precision = float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, float32)
            pinned.append(layer.name)
    return pinned


class TensorRTUnavailable(SourceError):
    """TensorRT or a GPU is missing where a gpu-trt engine was asked for."""


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        try:  # the bare bindings wheel over the NGC container's own TensorRT libraries (docker/Dockerfile)
            import tensorrt_bindings as trt
        except ImportError:
            trt = None
    if trt is None:
        raise TensorRTUnavailable(
            "TensorRT is not installed here, so no gpu-trt engine can be built. Build inside the NGC "
            "container (docker/Dockerfile) or on a GPU machine with 'pip install tensorrt'; use "
            "--target cpu on this machine. No engine was written."
        )
    return trt


def _check_gpu() -> None:
    if not detect_gpus():
        raise TensorRTUnavailable("no usable NVIDIA GPU (no CUDA driver or no device); a TensorRT engine must be built "
                                  "on the GPU that will run it. No engine was written.")


def check_available() -> None:
    """Raise TensorRTUnavailable unless TensorRT imports and a CUDA GPU is present."""
    _import_tensorrt()
    _check_gpu()


def build_engine(onnx_path: Path, spec: ModelSpec, max_batch: int = 4, fp16: bool = True,
                 workspace_gib: float = 8.0, out: Path | None = None) -> Path:
    """Parse ``onnx_path`` and build a plan with a batch profile 1..max_batch at the spec's size."""
    trt = _import_tensorrt()
    _check_gpu()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = pin_fp32_layers(network, trt.float32)
        log.info("%d of %d layers kept in float32 (softmax, normalisation, reductions)", len(pinned),
                 network.num_layers)
    profile = builder.create_optimization_profile()
    shape = (3, spec.height, spec.width)
    opt = max(1, max_batch // 2)
    profile.set_shape(ENGINE_INPUT, (1, *shape), (opt, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    # A timing cache is only valid for the TensorRT version and GPU that measured it.
    device = "+".join(sorted({slug(g.name) for g in detect_gpus()})) or "gpu"
    cache_file = cache_dir() / f"tensorrt-timing-{slug(trt.__version__)}-{device}.cache"
    timing = config.create_timing_cache(cache_file.read_bytes() if cache_file.exists() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    log.info("building TensorRT engine (%s, batch 1..%d); this takes minutes...", "fp16" if fp16 else "fp32",
             max_batch)
    t0 = time.monotonic()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    cache_file.write_bytes(memoryview(config.get_timing_cache().serialize()))
    out = out or onnx_path.with_suffix(".plan")
    out.write_bytes(memoryview(plan))
    log.info("wrote %s (%s) in %.0f s", out, human_size(out.stat().st_size), time.monotonic() - t0)
    return out
