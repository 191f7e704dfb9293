"""Load official checkpoints into our definitions: prefix clean-up, then a strict load.

Missing, unexpected or mis-shaped keys are errors that list them: nothing is skipped silently.
"""

from __future__ import annotations

from pathlib import Path

_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(RuntimeError):
    pass


def read_state_dict(path: Path) -> dict:
    """``.safetensors`` through safetensors, ``.pth``/``.bin`` through torch.load (weights only)."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state_dict, found {type(obj).__name__}")
    return obj


def strip_prefixes(state_dict: dict) -> dict:
    """Keys without the ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes, in any nesting."""
    cleaned = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        cleaned[key] = value
    return cleaned


def checkpoint_filter_fn(state_dict: dict, model) -> dict:
    """Strip prefixes; keep integer buffers the model builds itself if the checkpoint lacks them."""
    cleaned = strip_prefixes(state_dict)
    own = model.state_dict()
    for key, value in own.items():
        # relative_position_index is derived, num_batches_tracked irrelevant in eval: older
        # checkpoints omit them. Everything learned must be present.
        if key not in cleaned and (key.endswith("relative_position_index") or key.endswith("num_batches_tracked")):
            cleaned[key] = value
    return cleaned


def load_checkpoint(model, path_or_state: Path | dict) -> None:
    state = read_state_dict(path_or_state) if not isinstance(path_or_state, dict) else path_or_state
    state = checkpoint_filter_fn(state, model)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        def show(items: list[str]) -> str:
            return ", ".join(items[:20]) + (f" ... ({len(items)} in all)" if len(items) > 20 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches: {show(mismatched)}")
        raise CheckpointError("checkpoint does not fit the model; " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
