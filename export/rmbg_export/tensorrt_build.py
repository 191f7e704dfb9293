"""ONNX -> TensorRT plan with the TensorRT Python API (``--target gpu-trt``).

Runs where TensorRT and a GPU exist (the NGC container, a GPU machine); elsewhere it refuses
with a message saying so. It never writes a placeholder engine. The plan is written without
any header, so Triton's ``tensorrt_plan`` platform loads it as is.
"""

from __future__ import annotations

import time
from pathlib import Path

from rmbg_backend.spec import ModelSpec
from rmbg_export.cache import cache_dir, human_size
from rmbg_export.engine_key import detect_gpus, slug

# Layers kept in float32 inside an FP16 engine: Swin's LayerNorm overflows in half precision,
# softmax needs the range. Matched against TensorRT layer types and ONNX node names.
_FP32_LAYER_HINTS = ("LayerNorm", "layer_norm", "Softmax", "softmax", "ReduceMean", "Pow", "Sqrt")


class TensorRTUnavailable(RuntimeError):
    pass


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
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if any(h in layer.name or h in str(layer.type) for h in _FP32_LAYER_HINTS):
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
    profile = builder.create_optimization_profile()
    shape = (3, spec.height, spec.width)
    opt = max(1, max_batch // 2)
    profile.set_shape("input", (1, *shape), (opt, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    # A timing cache is only valid for the TensorRT version and GPU that measured it.
    device = "+".join(sorted({slug(g.name) for g in detect_gpus()})) or "gpu"
    cache_file = cache_dir() / f"tensorrt-timing-{slug(trt.__version__)}-{device}.cache"
    timing = config.create_timing_cache(cache_file.read_bytes() if cache_file.exists() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    print(f"building TensorRT engine ({'fp16' if fp16 else 'fp32'}, batch 1..{max_batch}); this takes minutes...",
          flush=True)
    t0 = time.monotonic()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    cache_file.write_bytes(memoryview(config.get_timing_cache().serialize()))
    out = out or onnx_path.with_suffix(".plan")
    out.write_bytes(memoryview(plan))
    print(f"wrote {out} ({human_size(out.stat().st_size)}) in {time.monotonic() - t0:.0f} s")
    return out
