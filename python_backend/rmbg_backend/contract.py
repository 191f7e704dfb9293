"""The service's wire contract: tensor names, their types and the ``rmbg_<model>`` naming rule.

One module owns these names so the generated configs, the Triton adapters, the client and
the gateway can never disagree. Dependency-free (standard library only): the client imports it.
"""

from __future__ import annotations

import json
from typing import NamedTuple

# The ensemble's inputs and outputs (README, "The Triton service"), identical for every family.
IMAGE = "IMAGE"
OPTIONS = "OPTIONS"
BACKGROUND = "BACKGROUND"
IMAGE_OUT = "IMAGE_OUT"
INFO = "INFO"
ENSEMBLE_INPUTS = (IMAGE, OPTIONS, BACKGROUND)
ENSEMBLE_OUTPUTS = (IMAGE_OUT, INFO)

# The segmentation engine's tensors, the same on every target so the ensemble never changes.
ENGINE_INPUT = "input"
ENGINE_OUTPUT = "mask"

# What preprocess hands to postprocess beside the engine's mask.
PIXELS = "PIXELS"
META = "META"

_ENSEMBLE_PREFIX = "rmbg_"


def ensemble_name(model: str) -> str:
    """``isnet`` -> ``rmbg_isnet``: the name clients call."""
    return f"{_ENSEMBLE_PREFIX}{model}"


def model_of_ensemble(name: str) -> str | None:
    """``rmbg_isnet`` -> ``isnet``; None for a name that is not one of our ensembles."""
    return name[len(_ENSEMBLE_PREFIX):] if name.startswith(_ENSEMBLE_PREFIX) and len(name) > 5 else None


def step_name(step: str, model: str) -> str:
    """``preprocess``/``postprocess`` + ``isnet`` -> ``preprocess_isnet``; the engine is named ``model``."""
    return f"{step}_{model}"

# Deployment targets the repository writer knows, and the precisions each accepts (first: default).
TARGET_PRECISIONS: dict[str, tuple[str, ...]] = {
    "cpu": ("int8", "f32", "bf16"),  # int8: NNCF-quantised OpenVINO IR, within the quality bounds
    "gpu-trt": ("fp16", "f32"),
    "gpu-ort": ("fp16", "f32"),
    "gpu-torch": ("fp16", "bf16", "f32"),
}
TARGETS = tuple(TARGET_PRECISIONS)
PRECISIONS = ("f32", "int8", "fp16", "bf16")

# gpu-torch engine settings (build-repo --graphs / --device): how launch overhead is removed,
# and where torch runs (cpu: tests and machines without a GPU; graphs then do not apply).
TORCH_GRAPH_MODES = ("cuda-graphs", "compile", "none")
TORCH_DEVICES = ("cuda", "cpu")

# Encoded outputs: content type <-> file extension, the one map the encoder, the client and the
# gateway's hosted files share.
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
CONTENT_TYPES = {ext: content_type for content_type, ext in EXTENSIONS.items()}


class WireError(NamedTuple):
    """A request refused by a step, as it travels inside Triton's error text."""

    field: str    # the tensor (IMAGE, OPTIONS, BACKGROUND, IMAGE_OUT) or OPTIONS key at fault
    code: str     # invalidImage | invalidParameter | unsupportedParameter | ...
    message: str  # what was wrong and what is accepted


_WIRE_KEY = '{"rmbg_error":'


def wire_error(field: str, code: str, message: str) -> str:
    """The text a step puts in its TritonError: a JSON object the client finds and parses back.

    Triton prefixes the text with its own words (the ensemble's name, a status), so the object is
    found by its key, never by a pattern over free text (see ``parse_wire_error``).
    """
    return json.dumps({"rmbg_error": {"field": field, "code": code, "message": message}}, separators=(",", ":"))


def parse_wire_error(text: str) -> WireError | None:
    """The refusal inside a Triton error text; None when the text holds none (a server fault)."""
    start = text.find(_WIRE_KEY)
    if start < 0:
        return None
    try:
        body, _ = json.JSONDecoder().raw_decode(text, start)
        error = body["rmbg_error"]
        return WireError(str(error["field"]), str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return None
