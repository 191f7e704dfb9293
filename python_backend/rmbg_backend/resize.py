"""Model input from decoded pixels: bilinear resize (half-pixel, no antialias) + normalise."""

from __future__ import annotations

import cv2
import numpy as np

from rmbg_backend.families import ModelSpec

cv2.setNumThreads(1)  # each Triton instance is one process; OpenCV's pool would oversubscribe


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear with align_corners=False semantics (what F.interpolate and ONNX half_pixel do)."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased shrink (pixel-area averaging), for images shown to people, not to the model."""
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def to_model_input(rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 3 x spec.height x spec.width, ``(x/255 - mean) / std``."""
    resized = resize_bilinear(rgb, spec.height, spec.width)
    out = np.empty((3, spec.height, spec.width), np.float32)
    for c, plane in enumerate(cv2.split(resized)):
        # planar output written channel by channel: no HWC float copy, no transpose copy
        np.multiply(plane, np.float32(1.0 / (255.0 * spec.std[c])), out=out[c], dtype=np.float32)
        out[c] -= np.float32(spec.mean[c] / spec.std[c])
    return out
