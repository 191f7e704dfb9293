"""Variant name -> constructor, filled by the ``@register_model`` decorators beside each definition.

Kept apart from the package ``__init__`` so that definitions import the decorator without
importing the package that imports them (no import cycle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        REGISTRY[name] = fn
        return fn
    return wrap
