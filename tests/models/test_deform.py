"""Our grid_sample deformable convolution against a slow, explicit formula written here.

The reference is torchvision's ``deform_conv2d`` definition spelled out loop by loop: for
each output pixel and kernel tap, the sampling point is the regular tap position plus the
(dy, dx) offset (channels 2t, 2t+1), its value is the bilinear interpolation of the four
neighbours with every neighbour outside the image counting as zero (and 0 when the point
lies at or beyond one pixel outside), scaled by the modulation mask.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rmbg_models.deform import DeformableConv2d, deform_conv2d


def bilinear_zero_outside(img: np.ndarray, y: float, x: float) -> np.ndarray:
    """``img`` (C, H, W) sampled at pixel coordinate (y, x); corners outside the image are 0."""
    _, height, width = img.shape
    if y <= -1 or y >= height or x <= -1 or x >= width:
        return np.zeros(img.shape[0])
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    out = np.zeros(img.shape[0])
    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            if 0 <= yy < height and 0 <= xx < width:
                out += wy * wx * img[:, yy, xx]
    return out


def reference_deform_conv2d(x, offset, weight, mask, bias, padding):
    """Loop-based modulated deformable conv, stride 1, dilation 1, float64."""
    x, offset, weight, mask = (t.double().numpy() for t in (x, offset, weight, mask))
    batch = x.shape[0]
    out_ch, _, kh, kw = weight.shape
    ho, wo = offset.shape[2:]
    out = np.zeros((batch, out_ch, ho, wo))
    for b in range(batch):
        for oy in range(ho):
            for ox in range(wo):
                acc = np.zeros(out_ch)
                for i in range(kh):
                    for j in range(kw):
                        t = i * kw + j
                        y = oy - padding + i + offset[b, 2 * t, oy, ox]
                        xx = ox - padding + j + offset[b, 2 * t + 1, oy, ox]
                        val = mask[b, t, oy, ox] * bilinear_zero_outside(x[b], y, xx)
                        acc += weight[:, :, i, j] @ val
                out[b, :, oy, ox] = acc + (bias.double().numpy() if bias is not None else 0.0)
    return out


def make_offsets(gen: torch.Generator, batch: int, taps: int, h: int, w: int) -> torch.Tensor:
    """Mix of fractional offsets, exact integer offsets and far out-of-image ones."""
    frac = (torch.rand(batch, 2 * taps, h, w, generator=gen) - 0.5) * 6.0  # within +-3 px, fractional
    integer = torch.randint(-2, 3, (batch, 2 * taps, h, w), generator=gen).float()
    far = (torch.rand(batch, 2 * taps, h, w, generator=gen) - 0.5) * 2.0 * (max(h, w) + 4)
    pick = torch.randint(0, 3, (batch, 2 * taps, h, w), generator=gen)
    return torch.where(pick == 0, frac, torch.where(pick == 1, integer, far))


@pytest.mark.parametrize("kernel_size", [1, 3, 7])
def test_deform_conv2d_matches_loop_reference(kernel_size: int) -> None:
    gen = torch.Generator().manual_seed(1234 + kernel_size)
    batch, in_ch, out_ch, h, w = 2, 3, 4, 6, 7
    taps = kernel_size * kernel_size
    padding = kernel_size // 2
    x = torch.randn(batch, in_ch, h, w, generator=gen)
    weight = torch.randn(out_ch, in_ch, kernel_size, kernel_size, generator=gen)
    bias = torch.randn(out_ch, generator=gen)
    offset = make_offsets(gen, batch, taps, h, w)
    mask = 2.0 * torch.sigmoid(torch.randn(batch, taps, h, w, generator=gen))

    # The mixture must really hit the interesting cases: points outside and in the 1-px border band.
    tap = torch.arange(taps)
    ys = torch.arange(h).view(1, 1, h, 1) - padding + (tap // kernel_size).view(1, -1, 1, 1) + offset[:, 0::2]
    outside = (ys <= -1) | (ys >= h)
    border = ((ys > -1) & (ys < 0)) | ((ys > h - 1) & (ys < h))
    assert outside.any() and border.any() and (offset.frac() != 0).any() and (offset.frac() == 0).any()

    ours = deform_conv2d(x, offset, weight, mask=mask, bias=bias, padding=padding)
    ref = reference_deform_conv2d(x, offset, weight, mask, bias, padding)
    assert ours.shape == (batch, out_ch, h, w)
    np.testing.assert_allclose(ours.double().numpy(), ref, rtol=0, atol=1e-5)


def test_zero_offsets_unit_mask_is_a_plain_convolution() -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 5, 9, 8, generator=gen)
    weight = torch.randn(6, 5, 3, 3, generator=gen)
    offset = torch.zeros(2, 18, 9, 8)
    ours = deform_conv2d(x, offset, weight, mask=torch.ones(2, 9, 9, 8), padding=1)
    torch.testing.assert_close(ours, torch.nn.functional.conv2d(x, weight, padding=1), rtol=0, atol=1e-5)


def test_module_uses_twice_sigmoid_modulation() -> None:
    torch.manual_seed(0)
    mod = DeformableConv2d(4, 5, kernel_size=3, padding=1).eval()
    with torch.no_grad():
        mod.offset_conv.weight.zero_()
        mod.offset_conv.bias.zero_()
        mod.modulator_conv.weight.zero_()
        mod.modulator_conv.bias.zero_()  # mask = 2*sigmoid(0) = 1 -> a plain convolution
        x = torch.randn(1, 4, 6, 6)
        expected = torch.nn.functional.conv2d(x, mod.regular_conv.weight, padding=1)
        torch.testing.assert_close(mod(x), expected, rtol=0, atol=1e-5)
    assert [n for n, _ in mod.state_dict().items()] == [
        "offset_conv.weight",
        "offset_conv.bias",
        "modulator_conv.weight",
        "modulator_conv.bias",
        "regular_conv.weight",
    ]
