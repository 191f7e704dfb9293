"""``rmbg build-repo``: write a Triton model repository, preprocess -> engine -> postprocess.

Configs are built here from small typed structures and the family's ``ModelSpec``, so the four
models of an ensemble can never disagree about sizes or tensor names, and every setting is a
``build-repo`` flag (``RepositorySettings``) rather than a hand edit of a generated file. The
engine's tensor names are the same on every target, so the ensemble never changes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from rmbg_backend import contract as c
from rmbg_backend.decode import Limits
from rmbg_backend.families import ModelSpec, family
from rmbg_backend.torch_engine import TorchSettings
from rmbg_export import metadata
from rmbg_export.builders import servable_onnx
from rmbg_export.cache import human_size
from rmbg_export.sources import resolve

log = logging.getLogger(__name__)
ENGINE_FILES = {("gpu-trt", None): "model.plan", ("gpu-torch", None): "model.safetensors",
                ("cpu", "int8"): "model.xml"}  # else model.onnx
ENGINE_ADAPTERS = {"cpu": "segment_cpu", "gpu-torch": "segment_torch"}  # Python-backend engines


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # Triton's TYPE_* without the prefix
    dims: tuple[int, ...]
    optional: bool = False
    ragged: bool = False

    def pbtxt(self) -> str:
        extra = (" optional: true" if self.optional else "") + (" allow_ragged_batch: true" if self.ragged else "")
        dims = ", ".join(str(d) for d in self.dims)
        return f'{{ name: "{self.name}" data_type: TYPE_{self.dtype} dims: [ {dims} ]{extra} }}'


@dataclass(frozen=True)
class ModelConfig:
    """One model's config.pbtxt: the fields this project uses, nothing free-form but ``extra``."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    max_batch: int
    backend: str | None = None
    platform: str | None = None
    instance_kind: str | None = "KIND_CPU"
    instances: int = 1
    dynamic_batching: bool = True
    parameters: dict[str, str] = field(default_factory=dict)
    extra: tuple[str, ...] = ()  # whole pbtxt blocks (ensemble steps, accelerators)

    def pbtxt(self) -> str:
        lines = [f'name: "{self.name}"']
        lines += [f'backend: "{self.backend}"'] if self.backend else []
        lines += [f'platform: "{self.platform}"'] if self.platform else []
        lines.append(f"max_batch_size: {self.max_batch}")
        lines.append("input [\n  " + ",\n  ".join(t.pbtxt() for t in self.inputs) + "\n]")
        lines.append("output [\n  " + ",\n  ".join(t.pbtxt() for t in self.outputs) + "\n]")
        if self.dynamic_batching:
            lines.append("dynamic_batching { max_queue_delay_microseconds: 0 }")
        if self.instance_kind:
            lines.append(f"instance_group [ {{ kind: {self.instance_kind} count: {self.instances} }} ]")
        lines += [f'parameters {{ key: "{k}" value: {{ string_value: {json.dumps(v)} }} }}'
                  for k, v in self.parameters.items()]
        lines += list(self.extra)
        return "\n".join(lines) + "\n"


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


def _engine_io(spec: ModelSpec, s: RepositorySettings) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    return ((Tensor(c.ENGINE_INPUT, s.engine_input_dtype, (3, spec.height, spec.width)),),
            (Tensor(c.ENGINE_OUTPUT, "FP32", (1, spec.height, spec.width)),))


def _spec_json(spec: ModelSpec) -> str:
    return json.dumps(asdict(spec), separators=(",", ":"))


def _step_parameters(spec: ModelSpec, limits: Limits) -> dict[str, str]:
    return {"spec": _spec_json(spec), "limits": json.dumps(asdict(limits))}


def preprocess_config(spec: ModelSpec, s: RepositorySettings) -> ModelConfig:
    engine_input, _ = _engine_io(spec, s)
    return ModelConfig(
        c.step_name("preprocess", spec.name),
        inputs=(Tensor(c.IMAGE, "STRING", (1,)), Tensor(c.OPTIONS, "STRING", (1,), optional=True)),
        outputs=(*engine_input, Tensor(c.PIXELS, "UINT8", (-1, -1, -1)), Tensor(c.META, "STRING", (1,))),
        max_batch=s.max_batch, backend="python", instances=s.pre_instances,
        parameters={**_step_parameters(spec, s.limits), "model_input": s.model_input},
    )


def postprocess_config(spec: ModelSpec, s: RepositorySettings) -> ModelConfig:
    _, engine_output = _engine_io(spec, s)
    return ModelConfig(
        c.step_name("postprocess", spec.name),
        inputs=(*engine_output, Tensor(c.PIXELS, "UINT8", (-1, -1, -1), ragged=True),
                Tensor(c.META, "STRING", (1,)), Tensor(c.BACKGROUND, "STRING", (1,), optional=True)),
        outputs=(Tensor(c.IMAGE_OUT, "STRING", (1,)), Tensor(c.INFO, "STRING", (1,))),
        max_batch=s.max_batch, backend="python", instances=s.post_instances,
        parameters=_step_parameters(spec, s.limits),
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


def _ort_accelerator(parameters: dict[str, str]) -> str:
    lines = "\n".join(f'  parameters {{ key: "{k}" value: {json.dumps(v)} }}' for k, v in parameters.items())
    return ("optimization { execution_accelerators { gpu_execution_accelerator: [ {\n  name: \"tensorrt\"\n"
            + lines + "\n} ] } }")


def engine_config(spec: ModelSpec, s: RepositorySettings, engine_cache_dir: str = "", *,
                  variant: str | None = None) -> ModelConfig:
    """The segmentation engine's config; ``variant`` (the PyTorch definition) is needed for gpu-torch."""
    inputs, outputs = _engine_io(spec, s)
    common = {"name": spec.name, "inputs": inputs, "outputs": outputs, "max_batch": s.max_batch,
              "instances": s.engine_instances}
    if s.target == "cpu":
        return ModelConfig(**common, backend="python", parameters={
            "engine": s.cpu_engine, "threads": str(s.threads), "precision": s.precision,
            "engine_file": engine_file_name(s.target, s.precision)})
    if s.target == "gpu-torch":
        if variant is None:
            raise ValueError("the gpu-torch engine config needs the variant its weights fit (isnet, birefnet, ...)")
        graphs = s.graphs if s.device == "cuda" else "none"  # on the CPU neither graphs nor compile apply
        torch_settings = TorchSettings(variant, s.precision, graphs, s.device, s.max_batch)
        return ModelConfig(**common, backend="python", instance_kind="KIND_GPU" if s.device == "cuda" else "KIND_CPU",
                           parameters={**torch_settings.to_params(), "spec": _spec_json(spec),
                                       "engine_file": engine_file_name(s.target, s.precision)})
    if s.target == "gpu-trt":
        return ModelConfig(**common, platform="tensorrt_plan", instance_kind="KIND_GPU",
                           extra=('default_model_filename: "model.plan"',))
    parameters = ort_tensorrt_parameters(spec, s.max_batch, engine_cache_dir)
    parameters["precision_mode"] = "FP16" if s.precision == "fp16" else "FP32"
    return ModelConfig(**common, platform="onnxruntime_onnx", instance_kind="KIND_GPU",
                       extra=(_ort_accelerator(parameters),))


def _ensemble_step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    maps = [f'      input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items()]
    maps += [f'      output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()]
    return "    {\n" + f'      model_name: "{model}"\n      model_version: -1\n' + "\n".join(maps) + "\n    }"


def ensemble_config(spec: ModelSpec, s: RepositorySettings) -> ModelConfig:
    m = spec.name
    steps = [
        _ensemble_step(c.step_name("preprocess", m), {c.IMAGE: c.IMAGE, c.OPTIONS: c.OPTIONS},
                       {c.ENGINE_INPUT: "model_input", c.PIXELS: "pixels", c.META: "meta"}),
        _ensemble_step(m, {c.ENGINE_INPUT: "model_input"}, {c.ENGINE_OUTPUT: "mask"}),
        _ensemble_step(c.step_name("postprocess", m),
                       {c.ENGINE_OUTPUT: "mask", c.PIXELS: "pixels", c.META: "meta", c.BACKGROUND: c.BACKGROUND},
                       {c.IMAGE_OUT: c.IMAGE_OUT, c.INFO: c.INFO}),
    ]
    scheduling = "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}"
    return ModelConfig(
        c.ensemble_name(m),
        inputs=(Tensor(c.IMAGE, "STRING", (1,)), Tensor(c.OPTIONS, "STRING", (1,), optional=True),
                Tensor(c.BACKGROUND, "STRING", (1,), optional=True)),
        outputs=(Tensor(c.IMAGE_OUT, "STRING", (1,)), Tensor(c.INFO, "STRING", (1,))),
        max_batch=s.max_batch, platform="ensemble", instance_kind=None, dynamic_batching=False,
        extra=(scheduling,),
    )


def _adapter_source(name: str) -> str:
    return (resources.files("rmbg_backend") / "triton" / f"{name}.py").read_text()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _place(engine_file: Path, dest: Path) -> Path:
    """Weights are large and immutable: hard-link them into the repository where possible."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and engine_file.resolve() == dest.resolve():
        return dest
    dest.unlink(missing_ok=True)
    try:
        os.link(engine_file, dest)
    except OSError:
        shutil.copyfile(engine_file, dest)
    return dest


def engine_file_name(target: str, precision: str = "") -> str:
    """``model.plan`` (gpu-trt), ``model.xml`` (cpu int8: an OpenVINO IR), else ``model.onnx``."""
    return ENGINE_FILES.get((target, precision), ENGINE_FILES.get((target, None), "model.onnx"))


def write_repository(out: Path, spec: ModelSpec, engine_file: Path,
                     settings: RepositorySettings = RepositorySettings(), variant: str | None = None) -> list[Path]:
    """Write the four models of ``rmbg_<spec.name>`` under ``out``; returns the files written.

    An ONNX or OpenVINO IR engine must carry provenance metadata matching ``spec``
    (``rmbg_export.metadata``); an IR must also have been made for the precision asked for.
    ``variant`` names the PyTorch definition of a gpu-torch engine's state_dict.
    """
    if engine_file.suffix in (".onnx", ".xml"):
        meta = metadata.check_matches(engine_file, spec)
        made_for = meta.get("rmbg.precision", "f32")
        if (engine_file.suffix == ".xml") != (settings.precision == "int8") or (
                engine_file.suffix == ".xml" and made_for != settings.precision):
            raise ValueError(f"{engine_file} is a {made_for} {engine_file.suffix} engine; --target "
                             f"{settings.target} --precision {settings.precision} needs "
                             f"{engine_file_name(settings.target, settings.precision)}")
    written = []
    for config, adapter in ((preprocess_config(spec, settings), "preprocess"),
                            (postprocess_config(spec, settings), "postprocess")):
        d = out / config.name
        written += [_write(d / "config.pbtxt", config.pbtxt()), _write(d / "1" / "model.py", _adapter_source(adapter))]
    engine_cache = (out / spec.name / "trt_cache").resolve()  # not numeric: Triton does not take it for a version
    if settings.target == "gpu-ort":
        engine_cache.mkdir(parents=True, exist_ok=True)
    engine = engine_config(spec, settings, str(engine_cache), variant=variant)
    d = out / engine.name
    written.append(_write(d / "config.pbtxt", engine.pbtxt()))
    if settings.target in ENGINE_ADAPTERS:
        written.append(_write(d / "1" / "model.py", _adapter_source(ENGINE_ADAPTERS[settings.target])))
    dest = _place(engine_file, d / "1" / engine_file_name(settings.target, settings.precision))
    if dest.suffix == ".xml":  # an IR's weights live beside it, under the same stem
        written.append(_place(engine_file.with_suffix(".bin"), dest.with_suffix(".bin")))
    written.append(dest)
    ensemble = ensemble_config(spec, settings)
    written.append(_write(out / ensemble.name / "config.pbtxt", ensemble.pbtxt()))
    (out / ensemble.name / "1").mkdir(exist_ok=True)
    return written


@dataclass(frozen=True)
class BuildResult:
    written: list[Path]
    source: str
    licence: str
    synthetic: bool


def build_repo(model: str, source: str, settings: RepositorySettings = RepositorySettings(),
               out: Path = Path("model_repository"), size: int | None = None,
               variant: str | None = None) -> BuildResult:
    """Resolve ``source``, make the engine for the target and write the ``rmbg_<model>`` ensemble.

    ``variant`` picks a definition for PyTorch weights (``birefnet-lite``, tiny test variants);
    by default it follows the checkpoint.
    """
    fam = family(model)
    spec = fam.spec(size)
    if settings.target == "gpu-trt":
        from rmbg_export.builders import check_available

        check_available()  # refuse before any slow conversion or export
    weights = resolve(source)
    log.warning("weights %s are under this licence: %s", source, weights.licence)
    if settings.target == "gpu-torch":
        from rmbg_export.torch_weights import torch_weights_file  # needs torch

        engine, variant = torch_weights_file(fam.name, weights, variant)
    else:
        engine = servable_onnx(fam, weights, spec, variant)
        if settings.target == "cpu" and settings.precision == "int8":
            from rmbg_export.quantize import cached_int8_ir  # needs NNCF (export extra)

            engine = cached_int8_ir(engine, spec)
    if settings.target == "gpu-trt":
        from rmbg_export.builders import build_engine

        engine = build_engine(engine, spec, max_batch=settings.max_batch, fp16=settings.precision == "fp16")
    written = write_repository(out, spec, engine, settings, variant)
    for path in written:
        log.info("wrote %s (%s)", path, human_size(path.stat().st_size))
    return BuildResult(written, source, weights.licence, weights.kind == "synthetic")
