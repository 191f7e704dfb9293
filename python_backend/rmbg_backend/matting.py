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

Memory: the full-resolution passes (guided upsampling, foreground estimation, about 124
bytes of float temporaries per pixel) run tile by tile, so they need a fixed working set of
about TILE_WORKING_SET_BYTES whatever the image size; what scales with the image is the
result (13 bytes per pixel: trimap, float alpha, foreground) beside the input.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

UNKNOWN = 128
TILE = 1024  # side of the full-resolution tiles
# Rows/columns a tile borrows from its neighbours so its own pixels come out as if the whole
# image had been filtered at once: the blur-fusion passes reach 45 + 3 pixels (box kernels of
# 90 and 6 anchored at their centres).
HALO = 50
TILE_WORKING_SET_BYTES = 124 * (TILE + 2 * HALO) ** 2


def _tiles(h: int, w: int, halo: int = HALO):
    """(outer region with halo, the tile inside that region, the tile in the image) per tile."""
    for y0 in range(0, h, TILE):
        for x0 in range(0, w, TILE):
            y1, x1 = min(h, y0 + TILE), min(w, x0 + TILE)
            oy0, ox0, oy1, ox1 = max(0, y0 - halo), max(0, x0 - halo), min(h, y1 + halo), min(w, x1 + halo)
            yield ((slice(oy0, oy1), slice(ox0, ox1)), (slice(y0 - oy0, y1 - oy0), slice(x0 - ox0, x1 - ox0)),
                   (slice(y0, y1), slice(x0, x1)))


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

    ``image`` is uint8 or float in 0..1; only the windows' pixels are converted to float64.
    Windows touching the image border are skipped, as in the reference implementation.
    """
    h, w, _ = image.shape
    centres = centres.copy()
    centres[0, :] = centres[-1, :] = False
    centres[:, 0] = centres[:, -1] = False
    cy, cx = np.nonzero(centres)
    dy, dx = np.mgrid[-1:2, -1:2]
    idx = (cy[:, None] + dy.ravel()[None]) * w + (cx[:, None] + dx.ravel()[None])
    win = image.reshape(h * w, 3)[idx].astype(np.float64)  # N x 9 x 3
    if image.dtype == np.uint8:
        win *= 1.0 / 255.0
    centred = win - win.mean(axis=1, keepdims=True)
    cov = np.matmul(centred.transpose(0, 2, 1), centred) / 9.0 + (eps / 9.0) * np.eye(3)
    vals = (1.0 + np.matmul(np.matmul(centred, np.linalg.inv(cov)), centred.transpose(0, 2, 1))) / 9.0
    return idx, vals


def solve_closed_form(image: np.ndarray, tri: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Closed-form alpha (Levin et al. 2008) for the unknown pixels of ``tri``, known ones fixed.

    Only the rows of the Laplacian that belong to unknown pixels are assembled:
    ``L_uu a_u = W_uk a_k`` with ``L = D - W``, so neither the full matrix nor a slice of it
    is ever built. Beyond the float32 result, memory grows with the unknown band only.
    """
    h, w = tri.shape
    flat_tri = tri.ravel()
    alpha = (tri == 255).astype(np.float32)
    u = np.flatnonzero(flat_tri == UNKNOWN)
    if not u.size:
        return alpha
    region = cv2.dilate((tri == UNKNOWN).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    idx, vals = _window_affinities(image, region, eps)
    rows = np.repeat(idx, 9, axis=1).ravel()
    cols = np.tile(idx, (1, 9)).ravel()
    vals = vals.ravel()
    keep = flat_tri[rows] == UNKNOWN
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    n = u.size
    row_pos = np.searchsorted(u, rows)  # u is sorted: position of each unknown pixel
    degree = np.bincount(row_pos, weights=vals, minlength=n)
    both = flat_tri[cols] == UNKNOWN
    known = ~both
    rhs = np.bincount(row_pos[known], weights=vals[known] * (flat_tri[cols[known]] == 255), minlength=n)
    w_uu = sp.csc_matrix((vals[both], (row_pos[both], np.searchsorted(u, cols[both]))), shape=(n, n))
    a_u = spla.spsolve((sp.diags(degree) - w_uu).tocsc(), rhs)
    alpha.ravel()[u] = np.clip(np.nan_to_num(a_u, nan=0.5), 0.0, 1.0)
    return alpha


def guided_coefficients(guide_small: np.ndarray, src_small: np.ndarray, r: int = 2,
                        eps: float = 1e-4) -> np.ndarray:
    """He & Sun's fast guided filter, low-resolution half: per-pixel (a_r, a_g, a_b, b) of q = a.I + b."""
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
    return np.dstack([_box(a, r), _box(b, r)]).astype(np.float32)


def apply_coefficients(coeffs: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The full-resolution half: coefficients upsampled bilinearly (cv2.resize's sampling grid;
    remap's 5-bit weights keep it within 1e-3) onto ``rgb`` (uint8), evaluated tile by tile so
    no full-size float image is ever built."""
    h, w = rgb.shape[:2]
    sh, sw = coeffs.shape[:2]
    ys = ((np.arange(h, dtype=np.float32) + 0.5) * (sh / h) - 0.5).astype(np.float32)
    xs = ((np.arange(w, dtype=np.float32) + 0.5) * (sw / w) - 0.5).astype(np.float32)
    out = np.empty((h, w), np.float32)
    for _, _, (ty, tx) in _tiles(h, w, halo=0):
        map_y, map_x = np.meshgrid(ys[ty], xs[tx], indexing="ij")
        c = cv2.remap(coeffs, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        guide = rgb[ty, tx].astype(np.float32) * np.float32(1.0 / 255.0)
        out[ty, tx] = (c[..., :3] * guide).sum(-1) + c[..., 3]
    return out


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


def estimate_foreground_tiled(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """estimate_foreground over uint8 ``rgb`` tile by tile (each with a HALO), as uint8."""
    h, w = alpha.shape
    out = np.empty((h, w, 3), np.uint8)
    for outer, inner, dest in _tiles(h, w):
        fg = estimate_foreground(rgb[outer].astype(np.float32) * np.float32(1.0 / 255.0), alpha[outer])[inner]
        out[dest] = np.clip(fg * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def matte(rgb: np.ndarray, tri: np.ndarray, max_unknown: int = 20_000) -> np.ndarray:
    """Alpha (float32 0..1) for an RGB uint8 image and a trimap."""
    h, w = tri.shape
    n_unknown = int(np.count_nonzero(tri == UNKNOWN))
    if n_unknown == 0:
        return (tri == 255).astype(np.float32)
    scale = min(1.0, (max_unknown / n_unknown) ** 0.5)
    if scale >= 1.0:
        alpha = solve_closed_form(rgb, tri)
    else:
        sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
        small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32) * np.float32(1.0 / 255.0)
        tri_small = cv2.resize(tri, (sw, sh), interpolation=cv2.INTER_NEAREST)
        alpha_small = solve_closed_form(small, tri_small)
        alpha = apply_coefficients(guided_coefficients(small, alpha_small), rgb)
    np.clip(alpha, 0.0, 1.0, out=alpha)
    alpha[tri == 255] = 1.0
    alpha[tri == 0] = 0.0
    return alpha


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
        refined = alpha.astype(np.float32) * np.float32(1.0 / 255.0)
    fg = estimate_foreground_tiled(rgb, refined)
    refined *= np.float32(255.0)
    refined += np.float32(0.5)
    return np.clip(refined, 0, 255, out=refined).astype(np.uint8), fg
