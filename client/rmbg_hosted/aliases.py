"""The hosted APIs' model names -> our model families (``isnet``, ``birefnet``).

Every protocol names its model its own way (a task's ``model``, a GMI request's ``model``, a fal
route's endpoint id, remove.bg's nothing at all); all of them resolve here. ``rmbg gateway
--alias NAME=MODEL`` adds or overrides a name.
"""

from __future__ import annotations

from collections.abc import Mapping

from rmbg_hosted.errors import InvalidInputError

DEFAULT_MODEL = "isnet"
MODEL_ALIASES: dict[str, str] = {
    "runware:109@1": "isnet", "briaai/RMBG-1.4": "isnet", "isnet": "isnet",
    "bria:2@1": "birefnet", "briaai/RMBG-2.0": "birefnet", "bria-image-remove-background": "birefnet",
    "birefnet": "birefnet", "fal-ai/bria/background/remove": "birefnet",
    "fal-ai/bria/background/replace": "birefnet",
    # the APIs that name no model: each answers with IS-Net unless --alias NAME=birefnet says otherwise
    "removebg": "isnet", "photoroom": "isnet", "clipdrop": "isnet",
}


def family_of(name: str, aliases: Mapping[str, str] = MODEL_ALIASES, *, parameter: str | None = "model") -> str:
    """A model name or alias -> its family; an unknown name is the caller's error, naming the accepted ones."""
    if name in aliases:
        return aliases[name]
    raise InvalidInputError(f"unknown model {name[:100]!r}; accepted: {', '.join(sorted(aliases))}",
                            code="unsupportedModel", parameter=parameter)
