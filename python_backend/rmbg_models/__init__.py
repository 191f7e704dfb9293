"""Our own PyTorch IS-Net and BiRefNet, registered by variant name (timm-style).

``create_model("birefnet-lite")`` builds a variant; ``list_models()`` lists them. Tiny
variants (``*-tiny``) exist for fast tests of export paths; they have no official weights.
Which family each variant belongs to is recorded in ``rmbg_backend.families``.
"""

from __future__ import annotations

from typing import Any

from rmbg_models import birefnet, isnet  # noqa: F401 - importing registers the variants
from rmbg_models.registry import REGISTRY


def list_models() -> list[str]:
    return sorted(REGISTRY)


def create_model(name: str, **kwargs: Any):
    """Build variant ``name`` in eval mode with freshly initialised (meaningless) weights."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**kwargs).eval()
