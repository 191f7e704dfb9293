"""The Triton configs of one ``rmbg_<model>`` ensemble, as ``model_config_pb2.ModelConfig`` messages.

Triton's own protobuf schema (shipped in tritonclient) builds every config, and protobuf's
``text_format`` renders it, so a field name or a type can never be misspelt and every generated
file parses back (tests/export/test_configs.py). The four models are built from one ``ModelSpec``
and one ``RepositorySettings``, so they can never disagree about sizes or tensor names; the
engine's tensor names are the same on every target, so the ensemble never changes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from rmbg_backend import contract as c
from rmbg_backend.decode import Limits
from rmbg_backend.families import ModelSpec
from rmbg_backend.torch_engine import TorchSettings

ENGINE_FILES = {("gpu-trt", None): "model.plan", ("gpu-torch", None): "model.safetensors",
                ("cpu", "int8"): "model.xml"}  # else model.onnx


@dataclass(frozen=True)
class RepositorySettings:
    """Everything ``build-repo`` flags control in the generated configs."""

    target: str = "cpu"
    precision: str = ""  # empty: the target's default (the first of contract.TARGET_PRECISIONS)
    max_batch: int = 4
    pre_instances: int = 1
    post_instances: int = 1
    engine_instances: int = 1
    threads: int = 0
    cpu_engine: str = "auto"
    limits: Limits = field(default_factory=Limits)
    graphs: str = "cuda-graphs"  # gpu-torch: cuda-graphs | compile | none (always none on the CPU)
    device: str = "cuda"  # gpu-torch: cuda, or cpu to run torch on the CPU (tests, no GPU)

    def __post_init__(self) -> None:
        if self.target not in c.TARGET_PRECISIONS:
            raise ValueError(f"unknown target {self.target!r}; choose one of {', '.join(c.TARGETS)}")
        allowed = c.TARGET_PRECISIONS[self.target]
        if not self.precision:
            object.__setattr__(self, "precision", allowed[0])
        if self.precision not in allowed:
            raise ValueError(f"--precision {self.precision} is not offered for --target {self.target}; "
                             f"choose one of {', '.join(allowed)}")
        for name in ("max_batch", "pre_instances", "post_instances", "engine_instances"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.graphs not in c.TORCH_GRAPH_MODES:
            raise ValueError(f"--graphs must be one of {', '.join(c.TORCH_GRAPH_MODES)}, got {self.graphs!r}")
        if self.device not in c.TORCH_DEVICES:
            raise ValueError(f"--device must be one of {', '.join(c.TORCH_DEVICES)}, got {self.device!r}")

    @property
    def model_input(self) -> str:
        """gpu-torch takes uint8 pixels and normalises on its device; every other engine float32."""
        return "uint8" if self.target == "gpu-torch" else "float32"

    @property
    def engine_input_dtype(self) -> str:
        return {"uint8": "UINT8", "float32": "FP32"}[self.model_input]


def engine_file_name(target: str, precision: str = "") -> str:
    """``model.plan`` (gpu-trt), ``model.xml`` (cpu int8: an OpenVINO IR), else ``model.onnx``."""
    return ENGINE_FILES.get((target, precision), ENGINE_FILES.get((target, None), "model.onnx"))


def render(config: mc.ModelConfig) -> str:
    """The config.pbtxt text of a config message."""
    return text_format.MessageToString(config)


def parse(text: str) -> mc.ModelConfig:
    """A config.pbtxt text back into its message (raises text_format.ParseError on a bad file)."""
    return text_format.Parse(text, mc.ModelConfig())


# -- building blocks ---------------------------------------------------------------------------

def tensor(name: str, dtype: str, dims: tuple[int, ...], *, optional: bool = False,
           ragged: bool = False) -> mc.ModelInput:
    """An input tensor (``dtype`` is Triton's ``TYPE_*`` without the prefix)."""
    return mc.ModelInput(name=name, data_type=mc.DataType.Value(f"TYPE_{dtype}"), dims=dims, optional=optional,
                         allow_ragged_batch=ragged)


def output(name: str, dtype: str, dims: tuple[int, ...]) -> mc.ModelOutput:
    return mc.ModelOutput(name=name, data_type=mc.DataType.Value(f"TYPE_{dtype}"), dims=dims)


def _model(name: str, inputs: list[mc.ModelInput], outputs: list[mc.ModelOutput], max_batch: int, *,
           backend: str = "", platform: str = "", kind: str | None = "KIND_CPU", instances: int = 1,
           batching: bool = True, parameters: Mapping[str, str] | None = None) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend=backend, platform=platform, max_batch_size=max_batch,
                            input=inputs, output=outputs)
    if batching:  # queue delay 0 gave the best latency on the CPU (README, "Measured here")
        config.dynamic_batching.SetInParent()  # max_queue_delay_microseconds stays 0
    if kind:
        config.instance_group.add(kind=mc.ModelInstanceGroup.Kind.Value(kind), count=instances)
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    return config


def _engine_io(spec: ModelSpec, s: RepositorySettings) -> tuple[mc.ModelInput, mc.ModelOutput]:
    return (tensor(c.ENGINE_INPUT, s.engine_input_dtype, (3, spec.height, spec.width)),
            output(c.ENGINE_OUTPUT, "FP32", (1, spec.height, spec.width)))


def _spec_json(spec: ModelSpec) -> str:
    return json.dumps(asdict(spec), separators=(",", ":"))


def _step_parameters(spec: ModelSpec, limits: Limits) -> dict[str, str]:
    return {"spec": _spec_json(spec), "limits": json.dumps(asdict(limits))}


# -- the four models ---------------------------------------------------------------------------

def preprocess_config(spec: ModelSpec, s: RepositorySettings) -> mc.ModelConfig:
    engine_input, _ = _engine_io(spec, s)
    return _model(
        c.step_name("preprocess", spec.name),
        [tensor(c.IMAGE, "STRING", (1,)), tensor(c.OPTIONS, "STRING", (1,), optional=True)],
        [output(c.ENGINE_INPUT, s.engine_input_dtype, tuple(engine_input.dims)),
         output(c.PIXELS, "UINT8", (-1, -1, -1)), output(c.META, "STRING", (1,))],
        s.max_batch, backend="python", instances=s.pre_instances,
        parameters={**_step_parameters(spec, s.limits), "model_input": s.model_input},
    )


def postprocess_config(spec: ModelSpec, s: RepositorySettings) -> mc.ModelConfig:
    _, engine_output = _engine_io(spec, s)
    return _model(
        c.step_name("postprocess", spec.name),
        [tensor(c.ENGINE_OUTPUT, "FP32", tuple(engine_output.dims)),
         tensor(c.PIXELS, "UINT8", (-1, -1, -1), ragged=True), tensor(c.META, "STRING", (1,)),
         tensor(c.BACKGROUND, "STRING", (1,), optional=True)],
        [output(c.IMAGE_OUT, "STRING", (1,)), output(c.INFO, "STRING", (1,))],
        s.max_batch, backend="python", instances=s.post_instances,
        # model_input: what highQuality's second pass sends to the engine (triton/postprocess.py)
        parameters={**_step_parameters(spec, s.limits), "model_input": s.model_input},
    )


def ort_tensorrt_parameters(spec: ModelSpec, max_batch: int, engine_cache_dir: str) -> dict[str, str]:
    """onnxruntime's TensorRT provider settings for ``gpu-ort``.

    The engine and timing caches go to ``engine_cache_dir`` (absolute, inside the model volume,
    so a restarted pod reuses them instead of rebuilding for minutes); onnxruntime does not key
    them on the TensorRT version, which is why the container keys the whole repository directory
    (rmbg_export.engine_key). One batch profile 1..max_batch at the model size: without it the
    provider rebuilds its engine each time a larger batch arrives.
    """
    if not os.path.isabs(engine_cache_dir):
        raise ValueError(f"gpu-ort needs an absolute engine cache directory, got {engine_cache_dir!r}")
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
        "trt_profile_min_shapes": f"{c.ENGINE_INPUT}:1x{shape}",
        "trt_profile_opt_shapes": f"{c.ENGINE_INPUT}:{opt}x{shape}",
        "trt_profile_max_shapes": f"{c.ENGINE_INPUT}:{max_batch}x{shape}",
    }


def engine_config(spec: ModelSpec, s: RepositorySettings, engine_cache_dir: str = "", *,
                  variant: str | None = None) -> mc.ModelConfig:
    """The segmentation engine's config; ``variant`` (the PyTorch definition) is needed for gpu-torch."""
    engine_input, engine_output = _engine_io(spec, s)
    io = ([engine_input], [engine_output])
    common = {"max_batch": s.max_batch, "instances": s.engine_instances}
    file_name = engine_file_name(s.target, s.precision)
    if s.target == "cpu":
        return _model(spec.name, *io, **common, backend="python", parameters={
            "engine": s.cpu_engine, "threads": str(s.threads), "precision": s.precision, "engine_file": file_name})
    if s.target == "gpu-torch":
        if variant is None:
            raise ValueError("the gpu-torch engine config needs the variant its weights fit (isnet, birefnet, ...)")
        graphs = s.graphs if s.device == "cuda" else "none"  # on the CPU neither graphs nor compile apply
        torch_settings = TorchSettings(variant, s.precision, graphs, s.device, s.max_batch)
        return _model(spec.name, *io, **common, backend="python",
                      kind="KIND_GPU" if s.device == "cuda" else "KIND_CPU",
                      parameters={**torch_settings.to_params(), "spec": _spec_json(spec), "engine_file": file_name})
    if s.target == "gpu-trt":
        config = _model(spec.name, *io, **common, platform="tensorrt_plan", kind="KIND_GPU")
        config.default_model_filename = file_name
        return config
    config = _model(spec.name, *io, **common, platform="onnxruntime_onnx", kind="KIND_GPU")
    parameters = ort_tensorrt_parameters(spec, s.max_batch, engine_cache_dir)
    parameters["precision_mode"] = "FP16" if s.precision == "fp16" else "FP32"
    config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt", parameters=parameters)
    return config


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> mc.ModelEnsembling.Step:
    return mc.ModelEnsembling.Step(model_name=model, model_version=-1, input_map=inputs, output_map=outputs)


def ensemble_config(spec: ModelSpec, s: RepositorySettings) -> mc.ModelConfig:
    m = spec.name
    config = _model(
        c.ensemble_name(m),
        [tensor(c.IMAGE, "STRING", (1,)), tensor(c.OPTIONS, "STRING", (1,), optional=True),
         tensor(c.BACKGROUND, "STRING", (1,), optional=True)],
        [output(c.IMAGE_OUT, "STRING", (1,)), output(c.INFO, "STRING", (1,))],
        s.max_batch, platform="ensemble", kind=None, batching=False,
    )
    config.ensemble_scheduling.step.extend([
        _step(c.step_name("preprocess", m), {c.IMAGE: c.IMAGE, c.OPTIONS: c.OPTIONS},
              {c.ENGINE_INPUT: "model_input", c.PIXELS: "pixels", c.META: "meta"}),
        _step(m, {c.ENGINE_INPUT: "model_input"}, {c.ENGINE_OUTPUT: "mask"}),
        _step(c.step_name("postprocess", m),
              {c.ENGINE_OUTPUT: "mask", c.PIXELS: "pixels", c.META: "meta", c.BACKGROUND: c.BACKGROUND},
              {c.IMAGE_OUT: c.IMAGE_OUT, c.INFO: c.INFO}),
    ])
    return config
