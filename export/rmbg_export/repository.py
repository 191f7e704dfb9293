"""Write a Triton model repository: preprocess -> engine -> postprocess behind one ensemble.

Configs are generated here, from the ModelSpec, so the four models of an ensemble can never
disagree about sizes or tensor names. The engine's tensor names (``input`` / ``mask``) are the
same on every target, so the ensemble is unchanged between CPU and GPU deployments.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from rmbg_backend.decode import Limits
from rmbg_backend.spec import ModelSpec

TARGETS = ("cpu", "gpu-trt", "gpu-ort")


def _adapter_source(name: str) -> str:
    return (resources.files("rmbg_backend") / "triton_models" / f"{name}.py").read_text()


def _params(values: dict[str, str]) -> str:
    return "\n".join(
        f'parameters {{ key: "{k}" value: {{ string_value: {json.dumps(v)} }} }}' for k, v in values.items()
    )


def _spec_json(spec: ModelSpec) -> str:
    return json.dumps(asdict(spec), separators=(",", ":"))


def preprocess_config(spec: ModelSpec, max_batch: int, instances: int, limits: Limits) -> str:
    h, w = spec.height, spec.width
    return f"""name: "preprocess_{spec.name}"
backend: "python"
max_batch_size: {max_batch}
input [
  {{ name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "OPTIONS" data_type: TYPE_STRING dims: [ 1 ] optional: true }}
]
output [
  {{ name: "input" data_type: TYPE_FP32 dims: [ 3, {h}, {w} ] }},
  {{ name: "PIXELS" data_type: TYPE_UINT8 dims: [ -1, -1, -1 ] }},
  {{ name: "META" data_type: TYPE_STRING dims: [ 1 ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
instance_group [ {{ kind: KIND_CPU count: {instances} }} ]
{_params({"spec": _spec_json(spec), "limits": json.dumps(asdict(limits))})}
"""


def postprocess_config(spec: ModelSpec, max_batch: int, instances: int, limits: Limits) -> str:
    h, w = spec.height, spec.width
    return f"""name: "postprocess_{spec.name}"
backend: "python"
max_batch_size: {max_batch}
input [
  {{ name: "mask" data_type: TYPE_FP32 dims: [ 1, {h}, {w} ] }},
  {{ name: "PIXELS" data_type: TYPE_UINT8 dims: [ -1, -1, -1 ] allow_ragged_batch: true }},
  {{ name: "META" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "BACKGROUND" data_type: TYPE_STRING dims: [ 1 ] optional: true }}
]
output [
  {{ name: "IMAGE_OUT" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "INFO" data_type: TYPE_STRING dims: [ 1 ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
instance_group [ {{ kind: KIND_CPU count: {instances} }} ]
{_params({"spec": _spec_json(spec), "limits": json.dumps(asdict(limits))})}
"""


def ort_tensorrt_parameters(spec: ModelSpec, max_batch: int, engine_cache_dir: str) -> dict[str, str]:
    """onnxruntime's TensorRT provider settings for ``gpu-ort``.

    The engine and timing caches go to ``engine_cache_dir`` (absolute, inside the model volume,
    so a restarted pod reuses them instead of rebuilding for minutes); onnxruntime does not key
    them on the TensorRT version, which is why the container keys the whole repository directory
    (rmbg_export.engine_key). One batch profile 1..max_batch at the model size: without it the
    provider rebuilds its engine each time a larger batch arrives.
    """
    shape = f"3x{spec.height}x{spec.width}"
    opt = max(1, max_batch // 2)
    return {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": "4294967296",
        "trt_layer_norm_fp32_fallback": "1",  # LayerNorm overflows in FP16 (Swin in BiRefNet)
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": engine_cache_dir,
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": engine_cache_dir,
        "trt_profile_min_shapes": f"input:1x{shape}",
        "trt_profile_opt_shapes": f"input:{opt}x{shape}",
        "trt_profile_max_shapes": f"input:{max_batch}x{shape}",
    }


def engine_config(spec: ModelSpec, target: str, max_batch: int, instances: int,
                  threads: int = 0, cpu_engine: str = "auto", precision: str = "f32",
                  engine_cache_dir: str = "") -> str:
    h, w = spec.height, spec.width
    io = f"""input [ {{ name: "input" data_type: TYPE_FP32 dims: [ 3, {h}, {w} ] }} ]
output [ {{ name: "mask" data_type: TYPE_FP32 dims: [ 1, {h}, {w} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}"""
    if target == "cpu":
        head = f'backend: "python"\nmax_batch_size: {max_batch}'
        tail = f"""instance_group [ {{ kind: KIND_CPU count: {instances} }} ]
{_params({"engine": cpu_engine, "threads": str(threads), "precision": precision})}"""
    elif target == "gpu-trt":
        head = f'platform: "tensorrt_plan"\nmax_batch_size: {max_batch}\ndefault_model_filename: "model.plan"'
        tail = f"instance_group [ {{ kind: KIND_GPU count: {instances} }} ]"
    elif target == "gpu-ort":
        if not os.path.isabs(engine_cache_dir):
            raise ValueError(f"gpu-ort needs an absolute engine cache directory, got {engine_cache_dir!r}")
        head = f'platform: "onnxruntime_onnx"\nmax_batch_size: {max_batch}'
        accelerator = "\n".join(f'  parameters {{ key: "{k}" value: {json.dumps(v)} }}'
                                 for k, v in ort_tensorrt_parameters(spec, max_batch, engine_cache_dir).items())
        tail = f"""instance_group [ {{ kind: KIND_GPU count: {instances} }} ]
optimization {{ execution_accelerators {{ gpu_execution_accelerator: [ {{
  name: "tensorrt"
{accelerator}
}} ] }} }}"""
    else:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    return f'name: "{spec.name}"\n{head}\n{io}\n{tail}\n'


def ensemble_config(spec: ModelSpec, max_batch: int) -> str:
    m = spec.name
    return f"""name: "rmbg_{m}"
platform: "ensemble"
max_batch_size: {max_batch}
input [
  {{ name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "OPTIONS" data_type: TYPE_STRING dims: [ 1 ] optional: true }},
  {{ name: "BACKGROUND" data_type: TYPE_STRING dims: [ 1 ] optional: true }}
]
output [
  {{ name: "IMAGE_OUT" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "INFO" data_type: TYPE_STRING dims: [ 1 ] }}
]
ensemble_scheduling {{
  step [
    {{
      model_name: "preprocess_{m}"
      model_version: -1
      input_map {{ key: "IMAGE" value: "IMAGE" }}
      input_map {{ key: "OPTIONS" value: "OPTIONS" }}
      output_map {{ key: "input" value: "model_input" }}
      output_map {{ key: "PIXELS" value: "pixels" }}
      output_map {{ key: "META" value: "meta" }}
    }},
    {{
      model_name: "{m}"
      model_version: -1
      input_map {{ key: "input" value: "model_input" }}
      output_map {{ key: "mask" value: "mask" }}
    }},
    {{
      model_name: "postprocess_{m}"
      model_version: -1
      input_map {{ key: "mask" value: "mask" }}
      input_map {{ key: "PIXELS" value: "pixels" }}
      input_map {{ key: "META" value: "meta" }}
      input_map {{ key: "BACKGROUND" value: "BACKGROUND" }}
      output_map {{ key: "IMAGE_OUT" value: "IMAGE_OUT" }}
      output_map {{ key: "INFO" value: "INFO" }}
    }}
  ]
}}
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_repository(
    out: Path,
    spec: ModelSpec,
    engine_file: Path,
    target: str = "cpu",
    max_batch: int = 4,
    pre_instances: int = 1,
    post_instances: int = 1,
    engine_instances: int = 1,
    threads: int = 0,
    cpu_engine: str = "auto",
    precision: str = "f32",
    limits: Limits = Limits(),
) -> list[Path]:
    """Write the four models of ``rmbg_<spec.name>`` under ``out``; returns the files written."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    m = spec.name
    written = []
    for step, config, source in (
        ("preprocess", preprocess_config(spec, max_batch, pre_instances, limits), "preprocess"),
        ("postprocess", postprocess_config(spec, max_batch, post_instances, limits), "postprocess"),
    ):
        d = out / f"{step}_{m}"
        _write(d / "config.pbtxt", config)
        _write(d / "1" / "model.py", _adapter_source(source))
        written += [d / "config.pbtxt", d / "1" / "model.py"]
    d = out / m
    engine_cache = (d / "trt_cache").resolve()  # not numeric, so Triton does not take it for a version
    if target == "gpu-ort":
        engine_cache.mkdir(parents=True, exist_ok=True)
    _write(d / "config.pbtxt", engine_config(spec, target, max_batch, engine_instances, threads, cpu_engine, precision,
                                             engine_cache_dir=str(engine_cache)))
    written.append(d / "config.pbtxt")
    if target == "cpu":
        _write(d / "1" / "model.py", _adapter_source("segment_onnx"))
        written.append(d / "1" / "model.py")
    engine_name = "model.plan" if target == "gpu-trt" else "model.onnx"
    dest = d / "1" / engine_name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or engine_file.resolve() != dest.resolve():
        dest.unlink(missing_ok=True)
        try:
            os.link(engine_file, dest)  # weights are large and immutable: share, don't copy
        except OSError:
            shutil.copyfile(engine_file, dest)
    written.append(dest)
    e = out / f"rmbg_{m}"
    _write(e / "config.pbtxt", ensemble_config(spec, max_batch))
    (e / "1").mkdir(exist_ok=True)
    written.append(e / "config.pbtxt")
    return written
