"""Alpha matting: rembg's trimap, closed-form matting on the unknown band, fast guided upsampling.

rembg runs pymatting's closed-form matting (Levin et al., PAMI 2008) over the whole image
and then its multi-level foreground estimation; on a phone photo that takes many seconds.
We solve the same closed-form system, but
  * only for the unknown band of the trimap (the windows touching it, nothing else),
  * at a scale where that band holds at most ``max_unknown`` pixels, and
  * bring the result back to full resolution with the fast guided filter (He & Sun 2015:
    linear coefficients fitted at low resolution, evaluated on the full-resolution image),
then re-impose the full-resolution trimap. Foreground colours come from blur-fusion
foreground estimation (Forte & Pitie, ICIP 2021), which removes the old background's
colour from semi-transparent edges at the cost of a few box filters.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

UNKNOWN = 128


def trimap(alpha: np.ndarray, fg_threshold: int = 240, bg_threshold: int = 10, erode_size: int = 10) -> np.ndarray:
    """rembg's trimap: certain regions eroded by a square of ``erode_size``, 128 in between.

    As in rembg, the foreground also erodes from the image border, the background does not.
    """
    kernel = np.ones((erode_size, erode_size), np.uint8)
    fg = cv2.erode((alpha > fg_threshold).astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    bg = cv2.erode((alpha < bg_threshold).astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    out = np.full(alpha.shape, UNKNOWN, np.uint8)
    out[fg.astype(bool)] = 255
    out[bg.astype(bool)] = 0
    return out


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def _window_affinities(image: np.ndarray, centres: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices (N x 9) and affinities (N x 9 x 9) of Levin et al.'s 3x3 windows.

    Windows touching the image border are skipped, as in the reference implementation.
    """
    h, w, _ = image.shape
    centres = centres.copy()
    centres[0, :] = centres[-1, :] = False
    centres[:, 0] = centres[:, -1] = False
    cy, cx = np.nonzero(centres)
    dy, dx = np.mgrid[-1:2, -1:2]
    idx = (cy[:, None] + dy.ravel()[None]) * w + (cx[:, None] + dx.ravel()[None])
    win = image.reshape(h * w, 3)[idx]  # N x 9 x 3
    centred = win - win.mean(axis=1, keepdims=True)
    cov = np.matmul(centred.transpose(0, 2, 1), centred) / 9.0 + (eps / 9.0) * np.eye(3)
    vals = (1.0 + np.matmul(np.matmul(centred, np.linalg.inv(cov)), centred.transpose(0, 2, 1))) / 9.0
    return idx, vals


def solve_closed_form(image: np.ndarray, tri: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Closed-form alpha (Levin et al. 2008) for the unknown pixels of ``tri``, known ones fixed.

    Only the rows of the Laplacian that belong to unknown pixels are assembled:
    ``L_uu a_u = W_uk a_k`` with ``L = D - W``, so neither the full matrix nor a slice of it
    is ever built.
    """
    h, w = tri.shape
    unknown = (tri == UNKNOWN).ravel()
    known_alpha = (tri == 255).astype(np.float64).ravel()
    if not unknown.any():
        return known_alpha.reshape(h, w)
    region = cv2.dilate((tri == UNKNOWN).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    idx, vals = _window_affinities(image.astype(np.float64), region, eps)
    rows = np.repeat(idx, 9, axis=1).ravel()
    cols = np.tile(idx, (1, 9)).ravel()
    vals = vals.ravel()
    keep = unknown[rows]
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    position = np.full(h * w, -1, np.int64)
    u = np.flatnonzero(unknown)
    position[u] = np.arange(u.size)
    n = u.size
    degree = np.bincount(position[rows], weights=vals, minlength=n)
    both = unknown[cols]
    rhs = np.bincount(position[rows[~both]], weights=vals[~both] * known_alpha[cols[~both]], minlength=n)
    w_uu = sp.csc_matrix((vals[both], (position[rows[both]], position[cols[both]])), shape=(n, n))
    a_u = spla.spsolve((sp.diags(degree) - w_uu).tocsc(), rhs)
    alpha = known_alpha.copy()
    alpha[u] = np.nan_to_num(a_u, nan=0.5)
    return np.clip(alpha.reshape(h, w), 0.0, 1.0)


def fast_guided_upsample(guide_small: np.ndarray, src_small: np.ndarray, guide_full: np.ndarray,
                         r: int = 2, eps: float = 1e-4) -> np.ndarray:
    """He & Sun's fast guided filter: fit q = a.I + b per window at low resolution, apply at full."""
    mean_i = _box(guide_small, r)
    mean_p = _box(src_small, r)
    cov_ip = _box(guide_small * src_small[..., None], r) - mean_i * mean_p[..., None]
    var = np.empty(guide_small.shape[:2] + (3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            v = _box(guide_small[..., i] * guide_small[..., j], r) - mean_i[..., i] * mean_i[..., j]
            var[..., i, j] = v
            var[..., j, i] = v
    var += eps * np.eye(3, dtype=np.float32)
    a = np.linalg.solve(var, cov_ip[..., None])[..., 0]
    b = mean_p - (a * mean_i).sum(-1)
    coeffs = np.dstack([_box(a, r), _box(b, r)])
    h, w = guide_full.shape[:2]
    coeffs = cv2.resize(coeffs, (w, h), interpolation=cv2.INTER_LINEAR)
    return (coeffs[..., :3] * guide_full).sum(-1) + coeffs[..., 3]


def _fb_blur_fusion(image, fg, bg, alpha, r):
    a = alpha[..., None]
    blurred_a = cv2.blur(alpha, (r, r))[..., None]
    blurred_fa = cv2.blur(fg * a, (r, r)) / (blurred_a + 1e-5)
    blurred_b1a = cv2.blur(bg * (1 - a), (r, r)) / ((1 - blurred_a) + 1e-5)
    fg = blurred_fa + a * (image - a * blurred_fa - (1 - a) * blurred_b1a)
    return np.clip(fg, 0, 1), blurred_b1a


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blur-fusion foreground colours (two passes, radii 90 and 6 as in the paper), float 0..1."""
    fg, bg = _fb_blur_fusion(image, image, image, alpha, 90)
    fg, _ = _fb_blur_fusion(image, fg, bg, alpha, 6)
    return fg


def matte(rgb: np.ndarray, tri: np.ndarray, max_unknown: int = 20_000) -> np.ndarray:
    """Alpha (float32 0..1) for an RGB uint8 image and a trimap."""
    h, w = tri.shape
    n_unknown = int((tri == UNKNOWN).sum())
    if n_unknown == 0:
        return (tri == 255).astype(np.float32)
    scale = min(1.0, (max_unknown / n_unknown) ** 0.5)
    full = rgb.astype(np.float32) * (1.0 / 255.0)
    if scale >= 1.0:
        alpha = solve_closed_form(full, tri).astype(np.float32)
    else:
        sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
        small = cv2.resize(full, (sw, sh), interpolation=cv2.INTER_AREA)
        tri_small = cv2.resize(tri, (sw, sh), interpolation=cv2.INTER_NEAREST)
        alpha_small = solve_closed_form(small, tri_small).astype(np.float32)
        alpha = fast_guided_upsample(small, alpha_small, full)
    alpha = np.where(tri == 255, 1.0, np.where(tri == 0, 0.0, np.clip(alpha, 0.0, 1.0)))
    return alpha.astype(np.float32)


def alpha_matting(rgb: np.ndarray, alpha: np.ndarray, fg_threshold: int = 240, bg_threshold: int = 10,
                  erode_size: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Refined alpha (uint8) and estimated foreground colours (uint8 RGB) for the cut-out.

    With no certain foreground or no certain background there is nothing to propagate:
    the prediction is kept and only the foreground colours are estimated.
    """
    tri = trimap(alpha, fg_threshold, bg_threshold, erode_size)
    if (tri == 255).any() and (tri == 0).any():
        refined = matte(rgb, tri)
    else:
        refined = alpha.astype(np.float32) * (1.0 / 255.0)
    fg = estimate_foreground(rgb.astype(np.float32) * (1.0 / 255.0), refined)
    return (
        np.clip(refined * 255.0 + 0.5, 0, 255).astype(np.uint8),
        np.clip(fg * 255.0 + 0.5, 0, 255).astype(np.uint8),
    )
