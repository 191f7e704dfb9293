"""What an engine file says about itself: written into ONNX ``metadata_props``, checked on use.

An OpenVINO IR (the int8 CPU engine) carries the same keys: OpenVINO imports an ONNX file's
``metadata_props`` into the model's ``rt_info["framework"]`` and keeps them in the IR.

A model repository is only as trustworthy as its weights' provenance: the writer refuses an
engine whose recorded family or input size disagrees with the repository it is put into, and
the licence travels with the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rmbg_backend.families import ModelSpec
from rmbg_export.cache import file_digest

KEYS = ("rmbg.spec", "rmbg.licence", "rmbg.source", "rmbg.source_sha256")


def provenance(spec: ModelSpec, source: str, licence: str, source_file: Path | None,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    values = {
        "rmbg.spec": json.dumps(asdict(spec), separators=(",", ":")),
        "rmbg.licence": licence,
        "rmbg.source": source,
        "rmbg.source_sha256": file_digest(source_file) if source_file is not None else "none (synthetic)",
    }
    values.update(extra or {})
    return values


def stamp(model: Any, values: dict[str, str]) -> Any:
    """Set (replace) ``values`` in an ``onnx.ModelProto``'s metadata_props."""
    import onnx

    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **values})
    return model


def stamp_file(path: Path, values: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    onnx.save(stamp(model, values), str(path))


def read(path: Path) -> dict[str, str]:
    """The metadata of an ONNX file (without loading its weights) or of an OpenVINO IR (``.xml``)."""
    if path.suffix == ".xml":
        import openvino as ov

        info = ov.Core().read_model(str(path)).get_rt_info()
        if "framework" not in info:
            return {}
        framework = info["framework"]
        return {k: framework[k].astype(str) for k in framework.keys()}
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def check_matches(path: Path, spec: ModelSpec) -> dict[str, str]:
    """Refuse an engine made for another family or input size; returns its metadata."""
    meta = read(path)
    missing = [k for k in KEYS if k not in meta]
    if missing:
        raise ValueError(f"{path}: no provenance metadata ({', '.join(missing)}); build it with "
                         "'rmbg build-repo' or 'rmbg export', which record spec, licence and source")
    recorded = ModelSpec.from_dict(json.loads(meta["rmbg.spec"]))
    if recorded != spec:
        raise ValueError(f"{path} was made for {recorded}, not {spec}; rebuild with matching --model/--size")
    return meta
