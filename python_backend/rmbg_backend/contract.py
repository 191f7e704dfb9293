"""The service's wire contract: tensor names, their types and the ``rmbg_<model>`` naming rule.

One module owns these names so the generated configs, the Triton adapters, the client and
the gateway can never disagree. Dependency-free (standard library only): the client imports it.
"""

from __future__ import annotations

# The ensemble's inputs and outputs (DESIGN.md section 2), identical for every family.
IMAGE = "IMAGE"
OPTIONS = "OPTIONS"
BACKGROUND = "BACKGROUND"
IMAGE_OUT = "IMAGE_OUT"
INFO = "INFO"
ENSEMBLE_INPUTS = (IMAGE, OPTIONS, BACKGROUND)
OPTIONAL_INPUTS = (OPTIONS, BACKGROUND)
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
