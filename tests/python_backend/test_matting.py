"""Alpha matting: rembg's trimap, the closed-form solve, and foreground colour estimation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from rmbg_backend.matting import (
    TILE,
    TILE_WORKING_SET_BYTES,
    alpha_matting,
    apply_coefficients,
    estimate_foreground,
    estimate_foreground_tiled,
    guided_coefficients,
    matte,
    solve_closed_form,
    trimap,
)
from tests.peak_memory import peak_bytes


def rembg_trimap(mask: np.ndarray, fg: int, bg: int, erode: int) -> np.ndarray:
    """rembg's definition (scipy erosion), written out as the reference."""
    is_fg = binary_erosion(mask > fg, structure=np.ones((erode, erode)), border_value=0)
    is_bg = binary_erosion(mask < bg, structure=np.ones((erode, erode)), border_value=1)
    out = np.full(mask.shape, 128, np.uint8)
    out[is_fg] = 255
    out[is_bg] = 0
    return out


def soft_disc(h: int = 120, w: int = 160) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    d = np.hypot(x - w / 2, y - h / 2)
    return np.clip((40 - d) / 6 + 0.5, 0, 1).astype(np.float32)


@pytest.mark.parametrize("erode", [1, 5, 11])
def test_trimap_matches_rembg(erode):
    mask = (soft_disc() * 255).astype(np.uint8)
    np.testing.assert_array_equal(trimap(mask, 240, 10, erode), rembg_trimap(mask, 240, 10, erode))


def composite(alpha: np.ndarray):
    h, w = alpha.shape
    rng = np.random.default_rng(0)
    fg = np.zeros((h, w, 3), np.float32)
    fg[...] = (0.9, 0.2, 0.1)
    bg = np.zeros((h, w, 3), np.float32)
    bg[...] = (0.1, 0.7, 0.2)
    bg += rng.normal(0, 0.02, bg.shape).astype(np.float32)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), fg


def test_closed_form_recovers_a_soft_edge():
    alpha = soft_disc()
    image, _ = composite(alpha)
    tri = trimap((alpha * 255).astype(np.uint8), 240, 10, 5)
    est = solve_closed_form(image.astype(np.float32) / 255, tri)
    band = tri == 128
    assert np.abs(est - alpha)[band].mean() < 0.03
    assert (est[tri == 255] == 1).all() and (est[tri == 0] == 0).all()


def test_reduced_scale_solve_is_no_less_accurate_than_full():
    alpha = cv2.resize(soft_disc(), (640, 480), interpolation=cv2.INTER_LINEAR)
    image, _ = composite(alpha)
    tri = trimap((alpha * 255).astype(np.uint8), 240, 10, 5)
    band = tri == 128
    full = matte(image, tri, max_unknown=10**9)  # 27,816 unknowns solved at full resolution
    reduced = matte(image, tri, max_unknown=3000)  # solved at about a third of the size
    assert np.abs(reduced - alpha)[band].mean() <= np.abs(full - alpha)[band].mean() + 0.01
    assert np.abs(reduced - alpha)[band].mean() < 0.05


def test_foreground_estimate_removes_the_old_background_colour():
    alpha = soft_disc()
    image, fg = composite(alpha)
    est = estimate_foreground(image.astype(np.float32) / 255, alpha)
    edge = (alpha > 0.2) & (alpha < 0.8)
    before = np.abs(image.astype(np.float32) / 255 - fg)[edge].mean()
    after = np.abs(est - fg)[edge].mean()
    assert after < before / 3


def test_alpha_matting_without_certain_regions_keeps_the_prediction():
    alpha = np.full((40, 50), 128, np.uint8)
    rgb = np.zeros((40, 50, 3), np.uint8)
    out, fg = alpha_matting(rgb, alpha)
    np.testing.assert_array_equal(out, alpha)
    assert fg.shape == rgb.shape and fg.dtype == np.uint8


def _big_case(h: int = 1400, w: int = 2300):
    """A soft-edged disc larger than one tile, over a textured background."""
    y, x = np.mgrid[0:h, 0:w]
    alpha = np.clip((h * 0.35 - np.hypot(x - w / 2, y - h / 2)) / 20 + 0.5, 0, 1).astype(np.float32)
    image, _ = composite(alpha)
    return image, alpha


def test_tiled_foreground_equals_the_whole_image_pass():
    image, alpha = _big_case()
    assert max(image.shape[:2]) > TILE
    whole = np.clip(estimate_foreground(image.astype(np.float32) / 255, alpha) * 255 + 0.5, 0, 255).astype(np.uint8)
    tiled = estimate_foreground_tiled(image, alpha)
    assert np.abs(whole.astype(int) - tiled).max() <= 1


def test_tiled_guided_upsampling_equals_a_full_resize():
    image, alpha = _big_case()
    small = cv2.resize(image, (230, 140), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    coeffs = guided_coefficients(small, cv2.resize(alpha, (230, 140), interpolation=cv2.INTER_AREA))
    full = cv2.resize(coeffs, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    expected = (full[..., :3] * (image.astype(np.float32) / 255)).sum(-1) + full[..., 3]
    # remap interpolates with 5-bit weights: within half a grey level of the float resize
    assert np.abs(apply_coefficients(coeffs, image) - expected).max() < 0.5 / 255


def test_matting_memory_does_not_grow_with_float_copies_of_the_image():
    """rembg-style matting held about 124 bytes of float arrays per pixel; ours keeps 13 bytes
    per pixel of results plus a fixed working set per tile."""
    image, alpha = _big_case(2000, 3000)
    alpha8 = (alpha * 255).astype(np.uint8)
    result, peak = peak_bytes(lambda: alpha_matting(image, alpha8))
    refined, fg = result
    assert refined.shape == alpha8.shape and fg.shape == image.shape
    budget = 16 * alpha8.size + TILE_WORKING_SET_BYTES + 40 * 2**20
    assert peak < budget, f"{peak / 2**20:.0f} MB for {alpha8.size / 1e6:.0f} MP (budget {budget / 2**20:.0f} MB)"
