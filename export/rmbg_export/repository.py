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
from rmbg_export import metadata
from rmbg_export.builders import servable_onnx
from rmbg_export.cache import human_size
from rmbg_export.sources import resolve

log = logging.getLogger(__name__)
ENGINE_FILES = {("gpu-trt", None): "model.plan", ("cpu", "int8"): "model.xml"}  # else model.onnx


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


def _engine_io(spec: ModelSpec) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    return ((Tensor(c.ENGINE_INPUT, "FP32", (3, spec.height, spec.width)),),
            (Tensor(c.ENGINE_OUTPUT, "FP32", (1, spec.height, spec.width)),))


def _step_parameters(spec: ModelSpec, limits: Limits) -> dict[str, str]:
    return {"spec": json.dumps(asdict(spec), separators=(",", ":")), "limits": json.dumps(asdict(limits))}


def preprocess_config(spec: ModelSpec, s: RepositorySettings) -> ModelConfig:
    engine_input, _ = _engine_io(spec)
    return ModelConfig(
        c.step_name("preprocess", spec.name),
        inputs=(Tensor(c.IMAGE, "STRING", (1,)), Tensor(c.OPTIONS, "STRING", (1,), optional=True)),
        outputs=(*engine_input, Tensor(c.PIXELS, "UINT8", (-1, -1, -1)), Tensor(c.META, "STRING", (1,))),
        max_batch=s.max_batch, backend="python", instances=s.pre_instances,
        parameters=_step_parameters(spec, s.limits),
    )


def postprocess_config(spec: ModelSpec, s: RepositorySettings) -> ModelConfig:
    _, engine_output = _engine_io(spec)
    return ModelConfig(
        c.step_name("postprocess", spec.name),
        inputs=(*engine_output, Tensor(c.PIXELS, "UINT8", (-1, -1, -1), ragged=True),
                Tensor(c.META, "STRING", (1,)), Tensor(c.BACKGROUND, "STRING", (1,), optional=True)),
        outputs=(Tensor(c.IMAGE_OUT, "STRING", (1,)), Tensor(c.INFO, "STRING", (1,))),
        max_batch=s.max_batch, backend="python", instances=s.post_instances,
        parameters=_step_parameters(spec, s.limits),
    )


_ORT_TENSORRT = """optimization {{ execution_accelerators {{ gpu_execution_accelerator: [ {{
  name: "tensorrt"
  parameters {{ key: "precision_mode" value: "{precision}" }}
  parameters {{ key: "max_workspace_size_bytes" value: "4294967296" }}
  parameters {{ key: "trt_engine_cache_enable" value: "1" }}
}} ] }} }}"""


def engine_config(spec: ModelSpec, s: RepositorySettings) -> ModelConfig:
    inputs, outputs = _engine_io(spec)
    common = {"name": spec.name, "inputs": inputs, "outputs": outputs, "max_batch": s.max_batch,
              "instances": s.engine_instances}
    if s.target == "cpu":
        return ModelConfig(**common, backend="python", parameters={
            "engine": s.cpu_engine, "threads": str(s.threads), "precision": s.precision,
            "engine_file": engine_file_name(s.target, s.precision)})
    if s.target == "gpu-trt":
        return ModelConfig(**common, platform="tensorrt_plan", instance_kind="KIND_GPU",
                           extra=('default_model_filename: "model.plan"',))
    precision = "FP16" if s.precision == "fp16" else "FP32"
    return ModelConfig(**common, platform="onnxruntime_onnx", instance_kind="KIND_GPU",
                       extra=(_ORT_TENSORRT.format(precision=precision),))


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
                     settings: RepositorySettings = RepositorySettings()) -> list[Path]:
    """Write the four models of ``rmbg_<spec.name>`` under ``out``; returns the files written.

    An ONNX or OpenVINO IR engine must carry provenance metadata matching ``spec``
    (``rmbg_export.metadata``); an IR must also have been made for the precision asked for.
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
    engine = engine_config(spec, settings)
    d = out / engine.name
    written.append(_write(d / "config.pbtxt", engine.pbtxt()))
    if settings.target == "cpu":
        written.append(_write(d / "1" / "model.py", _adapter_source("segment_cpu")))
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
    engine = servable_onnx(fam, weights, spec, variant)
    if settings.target == "cpu" and settings.precision == "int8":
        from rmbg_export.quantize import cached_int8_ir  # needs NNCF (export extra)

        engine = cached_int8_ir(engine, spec)
    if settings.target == "gpu-trt":
        from rmbg_export.builders import build_engine

        engine = build_engine(engine, spec, max_batch=settings.max_batch, fp16=settings.precision == "fp16")
    written = write_repository(out, spec, engine, settings)
    for path in written:
        log.info("wrote %s (%s)", path, human_size(path.stat().st_size))
    return BuildResult(written, source, weights.licence, weights.kind == "synthetic")
