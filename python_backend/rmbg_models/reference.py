"""The reference fixtures' deterministic weight fill and test image (shared/reference/README.md).

``synthetic`` weights are this fill applied in our own state_dict order; tests assert that
order equals the official schema's, so the result is the reference fill exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

P = 2147483647


def fill_value(k: int, name: str, shape: list[int] | tuple[int, ...], dtype: str = "float32") -> np.ndarray | None:
    """Entry ``k``'s values (float32, C-order), or None for integer buffers the model builds."""
    if not dtype.startswith("float"):
        return None
    n = int(np.prod(shape)) if len(shape) else 1
    s = np.int64(k + 1)
    i = np.arange(n, dtype=np.int64)
    h = (((i * i) % P) * 1103515245 + ((i * s) % P) * 506952114 + s * 1500450271) % P
    v = 2.0 * (h.astype(np.float64) / P) - 1.0
    if name.endswith("relative_position_bias_table"):
        out = v
    elif len(shape) >= 2:
        out = v * (np.sqrt(6.0) / np.sqrt(n // shape[0]))
    elif name.endswith("running_mean"):
        out = 0.1 * v
    elif name.endswith("running_var"):
        out = 1.0 + 0.5 * np.abs(v)
    elif name.endswith(".weight"):
        out = 1.0 + 0.1 * v
    elif name.endswith(".bias"):
        out = 0.1 * v
    else:
        raise ValueError(f"no fill category for {name} {shape}")
    return out.astype(np.float32).reshape(tuple(shape))


def synthetic_state_dict(model) -> dict:
    """Fill every float entry of ``model.state_dict()`` by its position; keep integer buffers."""
    import torch

    out = {}
    for k, (name, tensor) in enumerate(model.state_dict().items()):
        values = fill_value(k, name, list(tensor.shape), str(tensor.dtype).replace("torch.", ""))
        out[name] = tensor.clone() if values is None else torch.from_numpy(values)
    return out


def load_schema(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def reference_image(height: int, width: int) -> np.ndarray:
    """The fixtures' formula image, H x W x 3 uint8."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = (x + 0.5) / width, (y + 0.5) / height
    r = 127.5 + 127 * np.sin(2 * np.pi * (3 * u + 2 * v))
    g = 127.5 + 127 * np.sin(2 * np.pi * (1.5 * u - 2.5 * v) + 1)
    b = 127.5 + 127 * np.cos(2 * np.pi * 4 * ((u - 0.5) ** 2 + (v - 0.5) ** 2))
    disc = (u - 0.55) ** 2 + (v - 0.45) ** 2 < 0.09
    r = np.where(disc, 255 - r, r)
    g = np.where(disc, 255 - g, g)
    return np.floor(np.stack([r, g, b], axis=2)).astype(np.uint8)
