"""Edge colour error against ground-truth composites (used by test_shape.py and perf/bench_refine.py).

A real photo's subject is composited over a second photo: the eval mask, its edge softened, is
the alpha; the foreground colour F is the photo inside the mask, extended outward with the
nearest subject colour (the mask is binary, so beyond it the photo shows its own background,
which is no foreground colour). That composite is the input, whose true foreground is known. The cut-out
is then put on a third photo through the real pipeline (shape + compose) and compared with the
ground-truth composite of F over that third photo, in the soft edge where the old background
can bleed through.
"""

from __future__ import annotations

import cv2
import numpy as np

from rmbg_backend.compose import compose
from rmbg_backend.decode import DecodedImage
from rmbg_backend.options import Options
from rmbg_backend.shape import shape


def soft_alpha(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A binary mask with edges softened by a Gaussian of ``sigma`` pixels (uint8)."""
    blurred = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    return np.clip(blurred + 0.5, 0, 255).astype(np.uint8)


def extend_foreground(photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The photo inside ``mask`` (>= 128); outside, the colour of the nearest pixel inside."""
    inside = mask >= 128
    if not inside.any():
        return photo
    _, labels = cv2.distanceTransformWithLabels((~inside).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    nearest = np.flatnonzero(inside.ravel())[labels.ravel() - 1]
    return photo.reshape(-1, 3)[nearest].reshape(photo.shape)


def over_float(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255.0
    return a * fg.astype(np.float32) + (1.0 - a) * bg.astype(np.float32)


def edge_colour_error(foreground: np.ndarray, alpha: np.ndarray, old_bg: np.ndarray, new_bg: np.ndarray,
                      cut_alpha: np.ndarray | None = None) -> tuple[float, float]:
    """Mean |result - truth| (0..255, over RGB) in the soft edge, without and with refineForeground.

    ``alpha`` is the ground truth; ``cut_alpha`` the alpha the cut-out uses (a model's
    prediction; default: the ground truth, which isolates the colour estimate).
    """
    source = np.clip(over_float(foreground, alpha, old_bg) + 0.5, 0, 255).astype(np.uint8)
    truth = over_float(foreground, alpha, new_bg)
    cut_alpha = alpha if cut_alpha is None else cut_alpha
    edge = (alpha > 0) & (alpha < 255)
    background = DecodedImage(np.ascontiguousarray(new_bg), None, "PNG")
    errors = []
    for refine in (False, True):
        options = Options(refineForeground=refine)
        image, a, fg = shape(DecodedImage(source, None, "PNG"), cut_alpha, options)
        result, _ = compose(image, a, options, background, fg)
        errors.append(float(np.abs(result.astype(np.float32) - truth)[edge].mean()))
    return errors[0], errors[1]
