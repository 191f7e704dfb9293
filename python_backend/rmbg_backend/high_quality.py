"""``highQuality``: a second engine pass on the subject's crop, then an anti-aliased decision.

Two findings on the real IS-Net weights, measured over ../shared/eval (perf/quality_variants.py,
rows in perf/results/EXPERIMENTS.md) decide what this does:

* **The model sees the subject too small.** The engine squashes the whole photo to its fixed
  input (1024 x 1024), so a subject that fills a fifth of the frame gets a fifth of the model's
  pixels, and its thin or low-contrast parts come out grey or missing (a giraffe's neck, a
  cactus's flowers). A second pass on the subject's bounding box, grown by ``CROP_MARGIN`` so
  the model keeps the context it needs to tell subject from background, sees it at full model
  resolution; the two predictions are averaged inside the box. Averaging, rather than
  trusting the crop alone, keeps the first pass's vote where the zoomed view goes wrong (a
  bicycle's wheel filled in). A box that covers the whole photo would repeat the first pass
  exactly, so it is skipped.

* **A soft prediction is a probability, not an alpha.** IS-Net was trained on binary masks:
  its grey levels say "unsure", not "half transparent", so the grey ramp several pixels wide
  around every edge (wider on large photos, where the 1024-pixel prediction is stretched) is a
  halo that lets the old background show. The decision that minimises the expected absolute
  error of a binary truth is a threshold; where the prediction's histogram has a fuzzy second
  mode (a low-confidence subject), Otsu's threshold separates the modes better than a fixed
  0.5 (it lies in 0.36..0.50 on the eval photos). The edge is then drawn at sub-pixel precision
  and anti-aliased over one output pixel: ``alpha = 0.5 + (p - t) / |grad p|`` is the signed
  distance to the ``p = t`` contour in output pixels, clipped to 0..1, as signed-distance
  font rendering does.

The default path keeps RMBG-1.4's published recipe (soft, min-max stretched) because served
masks must equal the direct recipe within 1/255 (tests/integration/test_parity_quality.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

from rmbg_backend.families import ModelSpec
from rmbg_backend.mask import mask_to_probability
from rmbg_backend.resize import to_engine_input
from rmbg_backend.shape import SUBJECT_ALPHA, Box, crop_box, subject_box

# Context around the subject box for the second pass, as a share of the box (shape.crop_box):
# 10%, 20% and 30% give the same figures within noise, 40% and more lose the zoom, 0% the context
# (perf/results/quality_variants.json).
CROP_MARGIN = "20%"
# Otsu's threshold is kept within these bounds: a histogram with no second mode (a faint haze
# beside an empty background) must not turn the haze into solid foreground.
DECISION_RANGE = (0.25, 0.75)

# One engine call: an N x 3 x H x W batch in the engine's input dtype -> N x 1 x H x W float32.
SecondPass = Callable[[np.ndarray], np.ndarray]


def second_pass_box(prob: np.ndarray, margin: str = CROP_MARGIN) -> Box | None:
    """Where the second pass looks: the subject's box grown by ``margin``, or None when there is
    no subject or the box is the whole image (the first pass already saw exactly that)."""
    height, width = prob.shape
    box = subject_box(prob, SUBJECT_ALPHA / 255.0)
    if box is None:
        return None
    grown = crop_box(box, margin, width, height)
    return None if (grown.width, grown.height) == (width, height) else grown


def fuse_crop(prob: np.ndarray, crop_pred: np.ndarray, box: Box, normalization: str) -> bool:
    """Average the crop's prediction into ``prob`` (in place) inside ``box``; False when the crop's
    prediction has no contrast, which leaves ``prob`` as it was."""
    crop = mask_to_probability(crop_pred, box.height, box.width, normalization)
    if crop is None:
        return False
    region = prob[box.y0:box.y1, box.x0:box.x1]
    region += crop
    region *= np.float32(0.5)
    return True


def decision_threshold(prob: np.ndarray) -> float:
    """Otsu's threshold of a 0..1 probability map (256 bins), clipped to DECISION_RANGE."""
    hist = cv2.calcHist([prob], [0], None, [256], [0.0, 1.0 + 1e-6]).ravel().astype(np.float64)
    centres = (np.arange(256) + 0.5) / 256.0
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (s0 / w0 - (s0[-1] - s0) / w1) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    if between.max() <= 0:  # one level only: nothing to separate
        return 0.5
    # Every threshold inside an empty gap between the modes separates them equally well: take the
    # gap's middle (OpenCV takes its first bin, which hugs the lower mode).
    best = np.flatnonzero(between >= between.max() * (1.0 - 1e-9))
    t = ((best[0] + best[-1]) / 2.0 + 1.0) / 256.0  # between bin k and k + 1
    return float(min(max(t, DECISION_RANGE[0]), DECISION_RANGE[1]))


def anti_aliased_decision(prob: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 alpha: the ``prob >= threshold`` region with its contour anti-aliased over one pixel.

    ``prob`` (float32) is used as scratch and overwritten. Three float planes at most (about
    12 bytes per pixel): the gradient's two components and ``prob`` itself.
    """
    gx = cv2.Sobel(prob, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(prob, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REPLICATE)
    cv2.magnitude(gx, gy, gx)  # |grad p| per output pixel, in place
    del gy
    gx += np.float32(1e-6)  # a flat plateau decides by its side of the threshold
    prob -= np.float32(threshold)
    np.divide(prob, gx, out=prob)  # signed distance to the contour, in pixels
    del gx
    prob *= np.float32(255.0)
    prob += np.float32(128.0)  # 0.5 * 255, plus 0.5 to round
    return np.clip(prob, 0, 255, out=prob).astype(np.uint8)


def high_quality_alpha(pred: np.ndarray, rgb: np.ndarray, spec: ModelSpec, second_pass: SecondPass,
                       model_input: str = "float32") -> tuple[np.ndarray, float]:
    """uint8 alpha at ``rgb``'s size from the first pass's ``pred``, and the milliseconds spent in
    ``second_pass`` (0 when none was needed)."""
    height, width = rgb.shape[:2]
    prob = mask_to_probability(pred, height, width, spec.mask_normalization)
    if prob is None:  # nothing to cut out, as in the default path
        return np.zeros((height, width), np.uint8), 0.0
    box = second_pass_box(prob)
    engine_ms = 0.0
    if box is not None:
        crop = to_engine_input(np.ascontiguousarray(rgb[box.y0:box.y1, box.x0:box.x1]), spec, model_input)
        t0 = time.perf_counter()
        out = np.asarray(second_pass(crop[np.newaxis]))
        engine_ms = round((time.perf_counter() - t0) * 1000.0, 3)
        expected = (1, 1, spec.height, spec.width)
        if out.shape != expected:
            raise ValueError(f"the second pass returned a mask of shape {out.shape}, expected {expected}")
        fuse_crop(prob, out[0], box, spec.mask_normalization)
    return anti_aliased_decision(prob, decision_threshold(prob)), engine_ms
