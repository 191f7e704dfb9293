"""Model output -> 8-bit alpha at the original size, and rembg's optional mask clean-up."""

from __future__ import annotations

import cv2
import numpy as np

from rmbg_backend.resize import resize_bilinear

# Smallest prediction range (max - min, in 0..1) that min-max normalisation may stretch.
# Measured with the real imgly-isnet weights through our decode and preprocessing
# (perf/prediction_range.py -> perf/results/prediction_range.json): each of the 31
# ../shared/eval photos spans at least 0.864 (the lowest: ecssd_0033), while inputs with
# nothing to cut out (eight flat colours, a gradient, faint noise) span at most 0.030.
# 0.1 sits 8.6x below the first and 3.3x above the second.
NO_CONTRAST_RANGE = 0.1


def _scaled(pred: np.ndarray, height: int, width: int, normalization: str, top: float) -> np.ndarray | None:
    """The prediction resized to ``height`` x ``width`` and mapped to 0..``top`` (float32, a new array);
    None when a min-max prediction has no contrast (see NO_CONTRAST_RANGE)."""
    src = np.asarray(pred, dtype=np.float32).reshape(pred.shape[-2], pred.shape[-1])
    m = resize_bilinear(src, height, width)
    if m is src:  # same size: never scale the caller's array in place
        m = src.copy()
    if normalization == "minmax":
        lo, hi = float(m.min()), float(m.max())
        if not hi - lo >= NO_CONTRAST_RANGE:  # also catches NaN
            return None
        m -= lo
        m *= np.float32(top / (hi - lo))
    else:
        np.clip(m, 0.0, 1.0, out=m)
        if top != 1.0:
            m *= np.float32(top)
    return m


def mask_to_alpha(pred: np.ndarray, height: int, width: int, normalization: str) -> np.ndarray:
    """Resize the prediction to ``height`` x ``width`` then map it to uint8.

    The RMBG-1.4 recipe resizes first and min-max stretches after. A prediction whose range
    is below NO_CONTRAST_RANGE found nothing to cut out: stretching it would turn noise such as
    1e-4 +- 2e-6 into a random full-range mask, so it gives an empty (all-zero) mask instead.
    Predictions used as they are (``none``, BiRefNet's sigmoid) are only clipped: they carry
    no noise amplification. Works in place on one float32 plane of the output size.
    """
    m = _scaled(pred, height, width, normalization, 255.0)
    if m is None:
        return np.zeros((height, width), np.uint8)
    m += np.float32(0.5)
    return np.clip(m, 0, 255, out=m).astype(np.uint8)


def mask_to_probability(pred: np.ndarray, height: int, width: int, normalization: str) -> np.ndarray | None:
    """The same mapping as ``mask_to_alpha`` kept in float32 0..1, for steps that combine
    predictions before deciding (``high_quality``); None where ``mask_to_alpha`` gives an empty mask."""
    return _scaled(pred, height, width, normalization, 1.0)


_OPEN_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


def post_process_mask(alpha: np.ndarray) -> np.ndarray:
    """rembg's ``post_process``: 3x3 elliptic opening, 5x5 Gaussian (sigma 2), threshold 127."""
    opened = cv2.morphologyEx(alpha, cv2.MORPH_OPEN, _OPEN_KERNEL)
    blurred = cv2.GaussianBlur(opened, (5, 5), sigmaX=2, sigmaY=2, borderType=cv2.BORDER_DEFAULT)
    return np.where(blurred < 127, 0, 255).astype(np.uint8)


def _edge(value: int | str, size: int) -> int:
    """A roi coordinate (pixels, or "N%" of ``size``) in pixels, clamped to the image."""
    pixels = round(float(value[:-1]) * size / 100.0) if isinstance(value, str) else int(value)
    return max(0, min(size, pixels))


def apply_roi(alpha: np.ndarray, roi: tuple[int | str, int | str, int | str, int | str]) -> np.ndarray:
    """Only the region of interest may hold the subject: alpha outside it becomes 0 (remove.bg's ``roi``).

    An empty region (x1 <= x0 or y1 <= y0) leaves nothing: the caller asked for no subject anywhere.
    """
    height, width = alpha.shape
    x0, x1 = _edge(roi[0], width), _edge(roi[2], width)
    y0, y1 = _edge(roi[1], height), _edge(roi[3], height)
    out = np.zeros_like(alpha)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = alpha[y0:y1, x0:x1]
    return out
