"""``rmbg build-repo``: write a Triton model repository, preprocess -> engine -> postprocess.

The configs come from ``rmbg_export.configs`` (Triton's own protobuf messages); this module resolves
the weights, makes the engine for the target and writes the files. Every setting is a
``build-repo`` flag (``RepositorySettings``), never a hand edit of a generated file.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rmbg_backend.families import ModelSpec, family
from rmbg_export import metadata
from rmbg_export.builders import servable_onnx
from rmbg_export.cache import human_size
from rmbg_export.configs import (
    RepositorySettings,
    engine_config,
    engine_file_name,
    ensemble_config,
    postprocess_config,
    preprocess_config,
    render,
)
from rmbg_export.sources import resolve

log = logging.getLogger(__name__)
ENGINE_ADAPTERS = {"cpu": "segment_cpu", "gpu-torch": "segment_torch"}  # Python-backend engines


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
        written += [_write(d / "config.pbtxt", render(config)), _write(d / "1" / "model.py", _adapter_source(adapter))]
    engine_cache = (out / spec.name / "trt_cache").resolve()  # not numeric: Triton does not take it for a version
    if settings.target == "gpu-ort":
        engine_cache.mkdir(parents=True, exist_ok=True)
    engine = engine_config(spec, settings, str(engine_cache), variant=variant)
    d = out / engine.name
    written.append(_write(d / "config.pbtxt", render(engine)))
    if settings.target in ENGINE_ADAPTERS:
        written.append(_write(d / "1" / "model.py", _adapter_source(ENGINE_ADAPTERS[settings.target])))
    dest = _place(engine_file, d / "1" / engine_file_name(settings.target, settings.precision))
    if dest.suffix == ".xml":  # an IR's weights live beside it, under the same stem
        written.append(_place(engine_file.with_suffix(".bin"), dest.with_suffix(".bin")))
    written.append(dest)
    ensemble = ensemble_config(spec, settings)
    written.append(_write(out / ensemble.name / "config.pbtxt", render(ensemble)))
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
