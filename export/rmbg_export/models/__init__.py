"""Our own PyTorch IS-Net and BiRefNet, registered by variant name (timm-style).

``create_model("birefnet-lite")`` builds a variant; ``list_models()`` lists them. Tiny
variants (``*-tiny``) exist for fast tests of export paths; they have no official weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn
    return wrap


def _import_definitions() -> None:
    # Importing the modules registers their variants.
    from rmbg_export.models import birefnet, isnet  # noqa: F401


def list_models() -> list[str]:
    _import_definitions()
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any):
    """Build variant ``name`` in eval mode with freshly initialised (meaningless) weights."""
    _import_definitions()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs).eval()
