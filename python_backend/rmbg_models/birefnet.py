"""BiRefNet, as used by BRIA RMBG-2.0 (Swin-L) and BiRefNet_lite (Swin-T).

Paper: `Bilateral Reference for High-Resolution Dichotomous Image Segmentation`
    - https://arxiv.org/abs/2401.03407
    Peng Zheng, Dehong Gao, Deng-Ping Fan, Li Liu, Jorma Laaksonen, Wanli Ouyang, Nicu Sebe.
    CAAI Artificial Intelligence Research (CAAI AIR), 2024.
Backbone: `Swin Transformer: Hierarchical Vision Transformer using Shifted Windows`
    - https://arxiv.org/abs/2103.14030, Liu et al., ICCV 2021 (see ``swin.py``).

BiRefNet = a Swin backbone run on the image and on a half-size copy (features concatenated,
"multi-scale input"), a context squeeze block on the coarsest level, and a four-level decoder
whose blocks use deformable ASPP (``deform.py``). Two "bilateral references" steer the
decoder: the *inward* reference feeds the raw image, cut into a grid of patches stacked on
channels, into every level (``ipt_blk1..5``); the *outward* reference is a gradient-attention
map (``gdt_convs_k``) that re-weights the features of levels 4..2.

Licences: the official BiRefNet code (https://github.com/ZhengPeng7/BiRefNet) is MIT, as is
the Swin code it vendors; BRIA publishes the RMBG-2.0 weights under its own (non-commercial)
licence. This file is our own code, written from the paper and the architecture facts in
``shared/reference/README.md``; no code was copied. Only module/parameter *names* follow the
official checkpoints (``strict=True`` load, same state_dict order).

Why our own definition (besides licence hygiene):

* The official configuration picks widths by indexing lists (``[N, channels[0]//8][1]``) and
  builds blocks with ``eval()``; here every width has a name and comes from
  :class:`BiRefNetConfig`.
* The official image-patch stacking loops over the batch and ``torch.split``s up to 32x32
  slices, which bakes the batch size into a traced graph; here it is one reshape/permute.
* The official Swin freezes padding, window counts and the shift mask at trace time; ours
  (``swin.py``) does not, and the deformable convolution exports as GridSample + MatMul.
* :meth:`BiRefNet.predict_mask` returns only ``sigmoid(final logits)`` and skips the three
  side heads, which is what serving needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rmbg_models.deform import DeformableConv2d
from rmbg_models.registry import register_model
from rmbg_models.swin import SwinConfig, SwinTransformer

__all__ = ["BiRefNetConfig", "BiRefNet", "PatchOrder", "stack_patches"]

PatchOrder = Literal["rmbg2", "new"]
"""Channel order of the stacked image patches.

``"rmbg2"``: ``b c (hg h) (wg w) -> b (wg hg c) h w`` (grid column, grid row, RGB), the order
of the RMBG-2.0 release and of BiRefNet weights trained before late 2024.
``"new"``: ``b c (hg h) (wg w) -> b (c hg wg) h w``, used by later BiRefNet code versions.
Both fit the same state_dict but are different functions of the weights (0.84 apart on the
reference golden), so the order must match the code the weights were trained with.
"""


def _resize(x: Tensor, size: Any) -> Tensor:
    """Bilinear resize with ``align_corners=True``, the only resize mode BiRefNet uses.

    ``align_corners=False`` would change the final mask by up to 0.34 (reference README).
    ``size`` comes from tensor shapes so a traced graph keeps H/W dynamic.
    """
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def stack_patches(x: Tensor, grid: int, order: PatchOrder = "rmbg2") -> Tensor:
    """Cut ``x`` (B, C, H, W) into a ``grid x grid`` mosaic and stack the tiles on channels.

    Returns ``(B, C*grid*grid, H/grid, W/grid)``. Pure reshape/permute (no loops, no split),
    so the exported graph is a handful of nodes whatever the batch size. H and W must be
    divisible by ``grid``.
    """
    if grid == 1:
        return x
    b, c, h, w = x.shape
    tiles = x.reshape(b, c, grid, h // grid, grid, w // grid)  # b c hg h wg w
    if order == "rmbg2":
        tiles = tiles.permute(0, 4, 2, 1, 3, 5)  # b wg hg c h w
    elif order == "new":
        tiles = tiles.permute(0, 1, 2, 4, 3, 5)  # b c hg wg h w
    else:
        raise ValueError(f"unknown patch order {order!r}; expected one of {get_args(PatchOrder)}")
    return tiles.flatten(1, 3)


@dataclass(frozen=True)
class BiRefNetConfig:
    """Everything that differs between BiRefNet variants; all decoder widths derive from it.

    The defaults are the RMBG-2.0 / BiRefNet general configuration ("dec_channels_inter":
    "fixed", ASPPDeformable with kernels 1/3/7, batch-norm everywhere, image patches with
    ``channels // 8`` output widths, 16-channel gradient attention).
    """

    backbone: SwinConfig
    dec_mid_channels: int = 64  # BasicDecBlk inner width (conv_in output / ASPP in-out)
    aspp_channels: int = 256  # width of every ASPP branch
    aspp_kernel_sizes: tuple[int, ...] = (1, 3, 7)  # the "aspp_deforms" branches (aspp1 is k=1)
    ipt_mid_channels: int = 64  # SimpleConvs inner width of the image-patch blocks
    ipt_channel_divisor: int = 8  # image-patch block output = level width // 8
    gdt_channels: int = 16  # gradient-attention width

    @property
    def encoder_channels(self) -> tuple[int, int, int, int]:
        """Widths of x1..x4 (strides 4..32): the half-scale features are concatenated, so 2x Swin's."""
        c1, c2, c3, c4 = self.backbone.stage_channels
        return (2 * c1, 2 * c2, 2 * c3, 2 * c4)

    @property
    def strides(self) -> tuple[int, int, int, int]:
        """Output strides of x1..x4 relative to the input."""
        p = self.backbone.patch_size
        return (p, 2 * p, 4 * p, 8 * p)


class SimpleConvs(nn.Module):
    """conv3x3 -> conv3x3, no normalisation or activation (the image-patch encoder)."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.conv_out = nn.Conv2d(mid_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv1(x))


class BasicLatBlk(nn.Module):
    """1x1 lateral projection of an encoder feature before it is added to the decoder path."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class ASPPBranch(nn.Module):
    """Deformable conv (no bias) -> BN -> ReLU; ``padding = k // 2`` keeps the size."""

    conv_bn_pairs = (("atrous_conv.regular_conv", "bn"),)  # the deformable conv is linear in its weights

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.atrous_conv = DeformableConv2d(
            in_channels, out_channels, kernel_size=kernel_size, stride=1, padding=kernel_size // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPPDeformable(nn.Module):
    """Deformable ASPP: a k=1 branch, one branch per kernel size, and a global-context branch.

    Unlike classic ASPP the receptive fields differ by kernel size (1, 3, 7) of deformable
    convolutions rather than by dilation rate. The image-level branch is a global average
    pool -> 1x1 conv -> BN -> ReLU, broadcast back to the map (the official bilinear resize
    from 1x1 with ``align_corners=True`` is exactly a broadcast). Dropout is a no-op in eval
    and omitted.
    """

    conv_bn_pairs = (("conv1", "bn1"),)

    def __init__(self, in_channels: int, branch_channels: int, kernel_sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.aspp1 = ASPPBranch(in_channels, branch_channels, 1)
        self.aspp_deforms = nn.ModuleList(ASPPBranch(in_channels, branch_channels, k) for k in kernel_sizes)
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, branch_channels, 1, bias=False),
            nn.BatchNorm2d(branch_channels),
            nn.ReLU(inplace=True),
        )
        self.conv1 = nn.Conv2d(branch_channels * (2 + len(kernel_sizes)), in_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        first = self.aspp1(x)
        branches = [first, *(branch(x) for branch in self.aspp_deforms)]
        branches.append(self.global_avg_pool(x).expand_as(first))
        return self.relu(self.bn1(self.conv1(torch.cat(branches, dim=1))))


class BasicDecBlk(nn.Module):
    """conv3x3 -> BN -> ReLU -> ASPPDeformable -> conv3x3 -> BN (no final activation)."""

    conv_bn_pairs = (("conv_in", "bn_in"), ("conv_out", "bn_out"))

    def __init__(self, in_channels: int, out_channels: int, cfg: BiRefNetConfig) -> None:
        super().__init__()
        mid = cfg.dec_mid_channels
        self.conv_in = nn.Conv2d(in_channels, mid, 3, padding=1)
        self.relu_in = nn.ReLU(inplace=True)
        self.dec_att = ASPPDeformable(mid, cfg.aspp_channels, cfg.aspp_kernel_sizes)
        self.conv_out = nn.Conv2d(mid, out_channels, 3, padding=1)
        # Registered after the convs (checkpoint order); applied right after each conv.
        self.bn_in = nn.BatchNorm2d(mid)
        self.bn_out = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu_in(self.bn_in(self.conv_in(x)))
        x = self.dec_att(x)
        return self.bn_out(self.conv_out(x))


class Decoder(nn.Module):
    """Coarse-to-fine decoder over x4 (stride 32) .. x1 (stride 4), with both references.

    Level k (4, 3, 2, 1) concatenates the upsampled previous output (+ lateral of the encoder
    feature) with the image-patch encoding of that resolution, runs a BasicDecBlk, and for
    k = 4..2 multiplies by a learned gradient-attention map. ``conv_ms_spvn_k`` (deep
    supervision) and ``gdt_convs_pred_k`` (gradient supervision) are training heads: the
    former is still returned by ``forward`` as RMBG-2.0's code does in eval mode, the latter is
    kept only so that checkpoints load strictly.
    """

    def __init__(self, cfg: BiRefNetConfig, patch_order: PatchOrder = "rmbg2") -> None:
        super().__init__()
        self.patch_order = patch_order
        c1, c2, c3, c4 = cfg.encoder_channels  # x4 keeps c4 channels after the squeeze block
        s1, s2, s3, s4 = cfg.strides
        # Patch grid per level: the tiles have the size of that level's map, so grid = stride.
        self.grid5, self.grid4, self.grid3, self.grid2 = s4, s3, s2, s1
        rgb, div, mid = cfg.backbone.in_channels, cfg.ipt_channel_divisor, cfg.ipt_mid_channels
        ipt5, ipt4, ipt3, ipt2, ipt1 = c4 // div, c4 // div, c3 // div, c2 // div, c1 // div
        self.ipt_blk5 = SimpleConvs(rgb * s4 * s4, ipt5, mid)
        self.ipt_blk4 = SimpleConvs(rgb * s3 * s3, ipt4, mid)
        self.ipt_blk3 = SimpleConvs(rgb * s2 * s2, ipt3, mid)
        self.ipt_blk2 = SimpleConvs(rgb * s1 * s1, ipt2, mid)
        self.ipt_blk1 = SimpleConvs(rgb, ipt1, mid)

        out1 = c1 // 2
        self.decoder_block4 = BasicDecBlk(c4 + ipt5, c3, cfg)
        self.decoder_block3 = BasicDecBlk(c3 + ipt4, c2, cfg)
        self.decoder_block2 = BasicDecBlk(c2 + ipt3, c1, cfg)
        self.decoder_block1 = BasicDecBlk(c1 + ipt2, out1, cfg)
        self.conv_out1 = nn.Sequential(nn.Conv2d(out1 + ipt1, 1, 1))

        self.lateral_block4 = BasicLatBlk(c3, c3)
        self.lateral_block3 = BasicLatBlk(c2, c2)
        self.lateral_block2 = BasicLatBlk(c1, c1)

        self.conv_ms_spvn_4 = nn.Conv2d(c3, 1, 1)
        self.conv_ms_spvn_3 = nn.Conv2d(c2, 1, 1)
        self.conv_ms_spvn_2 = nn.Conv2d(c1, 1, 1)

        g = cfg.gdt_channels
        self.gdt_convs_4 = self._gdt_convs(c3, g)
        self.gdt_convs_3 = self._gdt_convs(c2, g)
        self.gdt_convs_2 = self._gdt_convs(c1, g)
        self.gdt_convs_pred_4 = nn.Sequential(nn.Conv2d(g, 1, 1))
        self.gdt_convs_pred_3 = nn.Sequential(nn.Conv2d(g, 1, 1))
        self.gdt_convs_pred_2 = nn.Sequential(nn.Conv2d(g, 1, 1))
        self.gdt_convs_attn_4 = nn.Sequential(nn.Conv2d(g, 1, 1))
        self.gdt_convs_attn_3 = nn.Sequential(nn.Conv2d(g, 1, 1))
        self.gdt_convs_attn_2 = nn.Sequential(nn.Conv2d(g, 1, 1))

    @staticmethod
    def _gdt_convs(in_channels: int, gdt_channels: int) -> nn.Sequential:
        conv = nn.Conv2d(in_channels, gdt_channels, 3, padding=1)
        return nn.Sequential(conv, nn.BatchNorm2d(gdt_channels), nn.ReLU(inplace=True))

    def _patches(self, x: Tensor, block: SimpleConvs, grid: int) -> Tensor:
        # The official code also resizes the stacked tiles to the level size (bilinear,
        # align_corners=True); for inputs divisible by 32 that is exactly the identity.
        return block(stack_patches(x, grid, self.patch_order))

    def forward(
        self, x: Tensor, x1: Tensor, x2: Tensor, x3: Tensor, x4: Tensor, side_outputs: bool = True
    ) -> list[Tensor]:
        """``x``: the normalised image. Returns ``[m4, m3, m2, logits]`` or ``[logits]``."""
        p4 = self.decoder_block4(torch.cat([x4, self._patches(x, self.ipt_blk5, self.grid5)], dim=1))
        m4 = self.conv_ms_spvn_4(p4) if side_outputs else None
        p4 = p4 * torch.sigmoid(self.gdt_convs_attn_4(self.gdt_convs_4(p4)))

        p3 = _resize(p4, x3.shape[2:]) + self.lateral_block4(x3)
        p3 = self.decoder_block3(torch.cat([p3, self._patches(x, self.ipt_blk4, self.grid4)], dim=1))
        m3 = self.conv_ms_spvn_3(p3) if side_outputs else None
        p3 = p3 * torch.sigmoid(self.gdt_convs_attn_3(self.gdt_convs_3(p3)))

        p2 = _resize(p3, x2.shape[2:]) + self.lateral_block3(x2)
        p2 = self.decoder_block2(torch.cat([p2, self._patches(x, self.ipt_blk3, self.grid3)], dim=1))
        m2 = self.conv_ms_spvn_2(p2) if side_outputs else None
        p2 = p2 * torch.sigmoid(self.gdt_convs_attn_2(self.gdt_convs_2(p2)))

        p1 = _resize(p2, x1.shape[2:]) + self.lateral_block2(x1)
        p1 = self.decoder_block1(torch.cat([p1, self._patches(x, self.ipt_blk2, self.grid2)], dim=1))
        p1 = _resize(p1, x.shape[2:])
        logits = self.conv_out1(torch.cat([p1, self._patches(x, self.ipt_blk1, 1)], dim=1))
        if side_outputs:
            return [m4, m3, m2, logits]
        return [logits]


class BiRefNet(nn.Module):
    """BiRefNet with a Swin backbone, "cat" multi-scale input, context squeeze and the decoder.

    Inputs are ImageNet-normalised RGB ``(B, 3, H, W)`` with H and W divisible by 32 (the
    32x32 patch grid of the coarsest level; RMBG-2.0 runs at 1024x1024).
    """

    def __init__(self, cfg: BiRefNetConfig, patch_order: PatchOrder = "rmbg2") -> None:
        super().__init__()
        if patch_order not in get_args(PatchOrder):
            raise ValueError(f"unknown patch order {patch_order!r}; expected one of {get_args(PatchOrder)}")
        self.cfg = cfg
        self.bb = SwinTransformer(cfg.backbone)
        c1, c2, c3, c4 = cfg.encoder_channels
        # Context: x1..x3 resized onto x4 and concatenated, squeezed back to x4's width.
        self.squeeze_module = nn.Sequential(BasicDecBlk(c1 + c2 + c3 + c4, c4, cfg))
        self.decoder = Decoder(cfg, patch_order)

    @property
    def patch_order(self) -> PatchOrder:
        return self.decoder.patch_order

    @patch_order.setter
    def patch_order(self, order: PatchOrder) -> None:
        """Switch the image-patch channel order of an existing model (same weights)."""
        if order not in get_args(PatchOrder):
            raise ValueError(f"unknown patch order {order!r}; expected one of {get_args(PatchOrder)}")
        self.decoder.patch_order = order

    def _check_input(self, x: Tensor) -> None:
        if torch.jit.is_tracing():
            return  # shapes are symbolic while exporting; the check is for eager callers
        multiple = self.cfg.strides[-1]
        if x.dim() != 4 or x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(f"expected (B, 3, H, W) with H, W divisible by {multiple}, got {tuple(x.shape)}")

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Encoder + context squeeze: x1..x4 at strides 4..32 (x4 already squeezed)."""
        full = self.bb(x)
        # The same backbone on a half-size copy; its features are resized to the full-scale
        # ones and concatenated after them on channels ("cat" multi-scale input).
        half = self.bb(_resize(x, (x.shape[-2] // 2, x.shape[-1] // 2)))
        x1, x2, x3, x4 = (torch.cat([f, _resize(h, f.shape[2:])], dim=1) for f, h in zip(full, half, strict=True))
        size4 = x4.shape[2:]
        x4 = torch.cat([_resize(x1, size4), _resize(x2, size4), _resize(x3, size4), x4], dim=1)
        return x1, x2, x3, self.squeeze_module(x4)

    def forward(self, x: Tensor) -> list[Tensor]:
        """What the RMBG-2.0 code returns in eval mode: ``[m4, m3, m2, logits]``.

        ``m4``/``m3``/``m2`` are the coarse deep-supervision logits at strides 32/16/8;
        ``logits`` is the full-resolution prediction before the sigmoid.
        """
        self._check_input(x)
        return self.decoder(x, *self.forward_features(x), side_outputs=True)

    def predict_mask(self, x: Tensor) -> Tensor:
        """``sigmoid(final logits)``, ``(B, 1, H, W)`` in 0..1, skipping the side heads (for serving)."""
        self._check_input(x)
        return torch.sigmoid(self.decoder(x, *self.forward_features(x), side_outputs=False)[-1])


SWIN_L = SwinConfig(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12)
SWIN_T = SwinConfig(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7)
# Test-only: two blocks per stage so every stage has a shifted block; window 7 forces padding
# at every stage for 256-px inputs and a single padded window at the half-scale stride 32.
SWIN_TINY = SwinConfig(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=7)

CONFIGS: dict[str, BiRefNetConfig] = {
    "birefnet": BiRefNetConfig(backbone=SWIN_L),
    "birefnet-lite": BiRefNetConfig(backbone=SWIN_T),
    "birefnet-tiny": BiRefNetConfig(
        backbone=SWIN_TINY, dec_mid_channels=16, aspp_channels=16, ipt_mid_channels=16, gdt_channels=8
    ),
}


def _create_birefnet(variant: str, **kwargs: Any) -> BiRefNet:
    return BiRefNet(CONFIGS[variant], **kwargs)


@register_model("birefnet")
def birefnet(**kwargs: Any) -> BiRefNet:
    """RMBG-2.0 / BiRefNet general: Swin-L backbone (220 M parameters)."""
    return _create_birefnet("birefnet", **kwargs)


@register_model("birefnet-lite")
def birefnet_lite(**kwargs: Any) -> BiRefNet:
    """BiRefNet_lite: the same decoder on a Swin-T backbone (44 M parameters)."""
    return _create_birefnet("birefnet-lite", **kwargs)


@register_model("birefnet-tiny")
def birefnet_tiny(**kwargs: Any) -> BiRefNet:
    """Same topology at toy widths, for fast export tests. No official weights exist."""
    return _create_birefnet("birefnet-tiny", **kwargs)
