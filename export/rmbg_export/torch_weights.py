"""Weights for the gpu-torch target: any SOURCE -> one strict state_dict file (safetensors).

The engine loads ``model.safetensors`` from the version directory into our definition of the
variant the config names. Whatever the source (the imgly ONNX mapped onto IS-Net, an official
``.pth``/``.safetensors``, the synthetic fill), it goes through ``build_model``, which loads it
strictly into that definition first, so a file that would not load in the server never gets
written. Converted once per (source, variant) and cached.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rmbg_export.cache import cache_dir
from rmbg_export.export import build_model, resolve_variant, weights_key
from rmbg_export.sources import Weights

log = logging.getLogger(__name__)


def torch_weights_file(model: str, weights: Weights, variant: str | None = None) -> tuple[Path, str]:
    """``(safetensors file, variant)`` for ``weights`` in our ``model`` definition."""
    from safetensors.torch import save_file

    variant = resolve_variant(model, weights, variant)
    target = cache_dir() / "torch" / f"{variant}-{weights_key(weights)}.safetensors"
    if target.exists():
        log.info("using converted weights %s (cached)", target)
        return target, variant
    state = build_model(variant, weights).state_dict()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
              metadata={"variant": variant, "source": weights.source})
    tmp.replace(target)
    return target, variant
