"""Model output -> 8-bit alpha at the original size, and rembg's optional mask clean-up."""

from __future__ import annotations

import cv2
import numpy as np

from rmbg_backend.resize import resize_bilinear


def mask_to_alpha(pred: np.ndarray, height: int, width: int, normalization: str) -> np.ndarray:
    """Resize the prediction to ``height`` x ``width`` then map it to uint8.

    The RMBG-1.4 recipe resizes first and min-max stretches after; a constant prediction
    (no contrast to stretch) is clipped instead of dividing by zero.
    """
    m = np.asarray(pred, dtype=np.float32).reshape(pred.shape[-2], pred.shape[-1])
    m = resize_bilinear(m, height, width)
    if normalization == "minmax":
        lo, hi = float(m.min()), float(m.max())
        if hi - lo > 1e-6:
            m = (m - lo) * (255.0 / (hi - lo))
        else:
            m = np.clip(m, 0.0, 1.0) * 255.0
    else:
        m = np.clip(m, 0.0, 1.0) * 255.0
    return np.clip(m + 0.5, 0, 255).astype(np.uint8)


_OPEN_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


def post_process_mask(alpha: np.ndarray) -> np.ndarray:
    """rembg's ``post_process``: 3x3 elliptic opening, 5x5 Gaussian (sigma 2), threshold 127."""
    opened = cv2.morphologyEx(alpha, cv2.MORPH_OPEN, _OPEN_KERNEL)
    blurred = cv2.GaussianBlur(opened, (5, 5), sigmaX=2, sigmaY=2, borderType=cv2.BORDER_DEFAULT)
    return np.where(blurred < 127, 0, 255).astype(np.uint8)
