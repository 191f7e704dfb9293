"""Modulated deformable 2-D convolution (DCNv2) in plain PyTorch, for BiRefNet's ASPPDeformable.

Papers: `Deformable Convolutional Networks` - https://arxiv.org/abs/1703.06211
    Jifeng Dai, Haozhi Qi, Yuwen Xiong, Yi Li, Guodong Zhang, Han Hu, Yichen Wei. ICCV 2017.
`Deformable ConvNets v2: More Deformable, Better Results` - https://arxiv.org/abs/1811.11168
    Xizhou Zhu, Han Hu, Stephen Lin, Jifeng Dai. CVPR 2019.

BiRefNet calls ``torchvision.ops.deform_conv2d``. We re-implement exactly its semantics
(offset channel layout, bilinear sampling with zeros outside the image, modulation mask)
with ``F.grid_sample`` and one matrix product, for two reasons:

* no torchvision dependency in the export environment;
* ONNX: ``DeformConv`` exists only from opset 19 and many runtimes / TensorRT versions lack
  it, whereas ``GridSample`` (opset 16) and ``MatMul`` are supported everywhere we serve.
  All sizes are taken from tensor shapes, so the traced graph keeps dynamic batch and H/W.

This file is our own code (no code copied from torchvision, BSD-3-Clause, or BiRefNet, MIT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["deform_conv2d", "DeformableConv2d"]


def deform_conv2d(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> Tensor:
    """Modulated deformable convolution with ``torchvision.ops.deform_conv2d`` semantics.

    Args:
        x: input ``(B, C, H, W)``.
        offset: ``(B, 2*kh*kw, Ho, Wo)``; channel ``2*t`` is the row offset (dy) and ``2*t + 1``
            the column offset (dx) of kernel tap ``t = i*kw + j`` (torchvision's layout, one
            offset group).
        weight: ``(O, C, kh, kw)`` (no channel groups).
        mask: optional modulation ``(B, kh*kw, Ho, Wo)`` multiplying each sampled value.
        bias: optional ``(O,)``.

    Tap ``(i, j)`` of output pixel ``(oy, ox)`` samples the input at
    ``(oy*stride - padding + i*dilation + dy, ox*stride - padding + j*dilation + dx)`` with
    bilinear interpolation in which every corner outside the image counts as zero. That is
    exactly ``grid_sample(..., padding_mode="zeros", align_corners=False)`` once a pixel
    coordinate ``p`` is mapped to the normalised ``(2p + 1) / size - 1``.

    All K taps are sampled in one ``grid_sample`` call (grid rows ``K*Ho``), then the
    weighted sum over (channel, tap) is a single batched matmul, i.e. an im2col
    convolution whose columns come from the deformed positions.
    """
    b, c, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    taps = kh * kw
    ho, wo = offset.shape[-2], offset.shape[-1]
    device = x.device
    # Sampling positions are computed in at least float32: in float16 the spacing of
    # representable values near 256 is already 0.25 px. For float32 inputs this is a no-op.
    dtype = torch.promote_types(x.dtype, torch.float32)

    # Regular sampling grid: output position * stride - padding (+ tap position * dilation).
    base_y = torch.arange(ho, dtype=dtype, device=device) * stride - padding  # (Ho,)
    base_x = torch.arange(wo, dtype=dtype, device=device) * stride - padding  # (Wo,)
    tap = torch.arange(taps, device=device)  # t = i*kw + j
    tap_y = (torch.div(tap, kw, rounding_mode="floor") * dilation).to(dtype)  # (K,)
    tap_x = ((tap % kw) * dilation).to(dtype)

    off = offset.reshape(b, taps, 2, ho, wo).to(dtype)
    pos_y = base_y.view(1, 1, -1, 1) + tap_y.view(1, taps, 1, 1) + off[:, :, 0]  # (B, K, Ho, Wo)
    pos_x = base_x.view(1, 1, 1, -1) + tap_x.view(1, taps, 1, 1) + off[:, :, 1]

    # Pixel -> normalised coordinate for align_corners=False: pixel centres at (2p + 1)/size - 1.
    grid_x = (2.0 * pos_x + 1.0) / w - 1.0
    grid_y = (2.0 * pos_y + 1.0) / h - 1.0
    # grid_sample takes the grid in the input's dtype. bfloat16 keeps 8 mantissa bits, so a
    # normalised coordinate near 1 would be off by up to half a pixel on a 256-px map: a
    # bfloat16 model samples in float32 (float16, 11 bits, stays within 1/16 px there).
    sample_dtype = torch.float32 if x.dtype == torch.bfloat16 else x.dtype
    grid = torch.stack((grid_x, grid_y), dim=-1).reshape(b, taps * ho, wo, 2).to(sample_dtype)
    source = x if sample_dtype == x.dtype else x.to(sample_dtype)
    cols = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, C, K*Ho, Wo)
    if cols.dtype != x.dtype:
        cols = cols.to(x.dtype)
    cols = cols.reshape(b, c, taps, ho, wo)
    if mask is not None:
        cols = cols * mask.reshape(b, 1, taps, ho, wo)

    # (O, C*K) @ (B, C*K, Ho*Wo): the flattening order (c, tap) matches weight's (C, kh, kw).
    out = torch.matmul(weight.reshape(out_channels, c * taps), cols.reshape(b, c * taps, -1))
    out = out.reshape(b, out_channels, ho, wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class DeformableConv2d(nn.Module):
    """DCNv2 block as in BiRefNet: offsets and modulation predicted from the input itself.

    ``offset_conv`` predicts ``2*k*k`` offsets and ``modulator_conv`` ``k*k`` modulation
    logits with the same kernel/stride/padding as the main convolution; the modulation is
    ``2*sigmoid(logit)`` (range 0..2, so a zero-initialised predictor starts as a plain
    convolution). Attribute names match the official checkpoints (strict load).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        taps = kernel_size * kernel_size
        self.offset_conv = nn.Conv2d(in_channels, 2 * taps, kernel_size, stride=stride, padding=padding, bias=True)
        self.modulator_conv = nn.Conv2d(in_channels, taps, kernel_size, stride=stride, padding=padding, bias=True)
        self.regular_conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        offset = self.offset_conv(x)
        mask = 2.0 * torch.sigmoid(self.modulator_conv(x))
        return deform_conv2d(
            x,
            offset,
            self.regular_conv.weight,
            mask=mask,
            bias=self.regular_conv.bias,
            stride=self.stride,
            padding=self.padding,
        )
