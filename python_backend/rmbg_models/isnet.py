"""IS-Net, as used by BRIA RMBG-1.4 (``BriaRMBG``) and DIS (``ISNetDIS``).

Paper: `Highly Accurate Dichotomous Image Segmentation` - https://arxiv.org/abs/2203.03041
    Xuebin Qin, Hang Dai, Xiaobin Hu, Deng-Ping Fan, Ling Shao, Luc Van Gool. ECCV 2022.

IS-Net is a nested U-Net: an encoder of six RSU blocks (residual U-blocks, themselves small
U-Nets) and a mirrored decoder of five, with one 3x3 side head per decoder level. RMBG-1.4 is
this network trained by BRIA on their own data; its state_dict is identical to DIS's.

Licences: the original DIS code (https://github.com/xuebinqin/DIS) is Apache-2.0, and BRIA
publishes the RMBG-1.4 weights under its own (non-commercial) licence. This file is our own
code, written from the paper and the architecture facts in ``shared/reference/README.md``;
no code was copied. It only reproduces the module and parameter *names* so that official
checkpoints load with ``strict=True``.

Why our own definition instead of the upstream one: the upstream forward returns twelve
tensors (all side masks and all decoder features), so exporting it drags the large feature
maps into the graph. ``ISNet.predict_mask`` computes only the final mask, and every resize
takes its size from a tensor shape, so ONNX export with a dynamic batch axis is clean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rmbg_models.registry import register_model

__all__ = ["ConvBnReLU", "RSU", "ISNet"]

# Block type of encoder stages 1..6 (height, dilated); decoder stage k mirrors encoder stage k.
# This is the IS-Net topology and is deliberately not configurable: variants change widths only.
_STAGE_BLOCKS: tuple[tuple[int, bool], ...] = ((7, False), (6, False), (5, False), (4, False), (4, True), (4, True))

# RMBG-1.4 / DIS widths: (mid, out) channels per stage.
_ENCODER_WIDTHS: tuple[tuple[int, int], ...] = ((32, 64), (32, 128), (64, 256), (128, 512), (256, 512), (256, 512))
_DECODER_WIDTHS: tuple[tuple[int, int], ...] = ((256, 512), (128, 256), (64, 128), (32, 64), (16, 64))  # 5d .. 1d


def _resize_like(x: Tensor, ref: Tensor) -> Tensor:
    """Bilinear resize of ``x`` to ``ref``'s spatial size.

    The size comes from ``ref.shape`` (not from arithmetic on the input size) because the
    ceil-mode pyramid makes odd sizes round up, and because the ONNX tracer then records a
    Shape -> Resize chain instead of baking in constants. ``align_corners=False`` is what the
    weights were trained with; ``True`` changes the mask by up to 0.15.
    """
    return F.interpolate(x, size=ref.shape[2:], mode="bilinear", align_corners=False)


def _pool(x: Tensor) -> Tensor:
    # ceil_mode keeps the border row/column of odd-sized maps (300 -> 150 -> 75 -> 38 ...);
    # floor mode would drop it and shift every coarser level relative to the trained model.
    return F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


class ConvBnReLU(nn.Module):
    """3x3 conv -> BatchNorm -> ReLU, the only layer type inside the RSU blocks.

    Attribute names (``conv_s1``, ``bn_s1``) follow the official checkpoints so they load
    strictly. Padding equals dilation, so spatial size is preserved at every dilation rate.
    """

    conv_bn_pairs = (("conv_s1", "bn_s1"),)  # BN applied right after the conv: foldable for inference

    def __init__(self, in_chs: int, out_chs: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_chs, eps=1e-5)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of a given height (RSU-7 ... RSU-4, and RSU-4F when ``dilated``).

    A small U-Net whose output is added to its input projection (``rebnconvin``), so each
    stage sees multi-scale context without losing the full-resolution signal.

    * pooled (RSU-L): ``height - 1`` encoder convs separated by 2x2 max-pools, a dilation-2
      conv at the bottom, and decoder convs that upsample back to each skip's size.
    * dilated (RSU-LF): the deepest stages are already tiny (1/32 of the input), so instead
      of pooling further the receptive field grows through dilations 1, 2, 4, ..., and no
      resampling happens at all.

    Submodules are registered in the checkpoint's order (in, 1..height, (height-1)d..1d);
    ``reference.synthetic_state_dict`` relies on that order.
    """

    def __init__(self, height: int, in_chs: int, mid_chs: int, out_chs: int, dilated: bool = False) -> None:
        super().__init__()
        if height < 2:
            raise ValueError(f"RSU height must be >= 2, got {height}")
        self.height = height
        self.dilated = dilated
        # Dilation of encoder level i (1-based); the bottom conv at level `height` doubles the last one.
        dilations = [2 ** (i - 1) if dilated else 1 for i in range(1, height)]
        bottom_dilation = 2 * dilations[-1] if dilated else 2

        self.rebnconvin = ConvBnReLU(in_chs, out_chs)
        for i in range(1, height):
            self.add_module(f"rebnconv{i}", ConvBnReLU(out_chs if i == 1 else mid_chs, mid_chs, dilations[i - 1]))
        self.add_module(f"rebnconv{height}", ConvBnReLU(mid_chs, mid_chs, bottom_dilation))
        for i in range(height - 1, 0, -1):
            self.add_module(f"rebnconv{i}d", ConvBnReLU(2 * mid_chs, out_chs if i == 1 else mid_chs, dilations[i - 1]))

    def _encoder(self) -> list[ConvBnReLU]:
        return [getattr(self, f"rebnconv{i}") for i in range(1, self.height)]

    def _decoder(self) -> list[ConvBnReLU]:
        return [getattr(self, f"rebnconv{i}d") for i in range(self.height - 1, 0, -1)]

    def forward(self, x: Tensor) -> Tensor:
        x_in = self.rebnconvin(x)
        skips: list[Tensor] = []
        h = x_in
        for i, conv in enumerate(self._encoder()):
            if i > 0 and not self.dilated:
                h = _pool(h)
            h = conv(h)
            skips.append(h)
        # The bottom conv runs at the deepest encoder level's resolution: no pool before it.
        h = getattr(self, f"rebnconv{self.height}")(h)
        for i, (conv, skip) in enumerate(zip(self._decoder(), reversed(skips), strict=True)):
            # The first decoder conv pairs with the deepest skip, which has h's size already.
            if i > 0 and not self.dilated:
                h = _resize_like(h, skip)
            h = conv(torch.cat([h, skip], dim=1))
        return h + x_in


class ISNet(nn.Module):
    """IS-Net segmentation network (RMBG-1.4 / DIS ``ISNetDIS`` layout).

    Args:
        in_ch: input channels (3 for RGB).
        out_ch: channels of every side output (1 for a foreground mask).
        stem_width: channels of the stride-2 ``conv_in`` stem that feeds stage 1.
        encoder_widths: ``(mid, out)`` channels of encoder stages 1..6.
        decoder_widths: ``(mid, out)`` channels of decoder stages 5d..1d. Each decoder stage
            takes the concatenation of the level below (upsampled) and the encoder skip, so
            its input width follows from the other widths and is not a parameter.

    Only the widths are configurable; the block types and depths are fixed, so a narrow
    variant exercises exactly the same graph structure (pool/resize chain, concats) as the
    full model.
    """

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 1,
        stem_width: int = 64,
        encoder_widths: Sequence[tuple[int, int]] = _ENCODER_WIDTHS,
        decoder_widths: Sequence[tuple[int, int]] = _DECODER_WIDTHS,
    ) -> None:
        super().__init__()
        num_stages = len(_STAGE_BLOCKS)
        if len(encoder_widths) != num_stages or len(decoder_widths) != num_stages - 1:
            raise ValueError(
                f"need {num_stages} encoder and {num_stages - 1} decoder widths, "
                f"got {len(encoder_widths)} and {len(decoder_widths)}"
            )
        self.num_stages = num_stages

        # Stride 2 halves the cost of the whole network at 1024x1024; the side outputs are
        # upsampled back to the input size. (The upstream code also defines a `pool_in` that
        # its forward never uses; it has no parameters, so it is omitted.)
        self.conv_in = nn.Conv2d(in_ch, stem_width, kernel_size=3, stride=2, padding=1)

        in_chs = stem_width
        for k, ((height, dilated), (mid, out)) in enumerate(zip(_STAGE_BLOCKS, encoder_widths, strict=True), start=1):
            self.add_module(f"stage{k}", RSU(height, in_chs, mid, out, dilated))
            in_chs = out

        # Decoder stage k (5..1) mirrors encoder stage k and consumes [level below, skip k].
        side_chs = [encoder_widths[-1][1]]  # stage6 output feeds side6
        below = encoder_widths[-1][1]
        for k, (mid, out) in zip(range(num_stages - 1, 0, -1), decoder_widths, strict=True):
            height, dilated = _STAGE_BLOCKS[k - 1]
            self.add_module(f"stage{k}d", RSU(height, below + encoder_widths[k - 1][1], mid, out, dilated))
            side_chs.append(out)
            below = out
        side_chs.reverse()  # side_chs[k - 1] is the width feeding side k

        for k, chs in enumerate(side_chs, start=1):
            self.add_module(f"side{k}", nn.Conv2d(chs, out_ch, kernel_size=3, padding=1))

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Decoder features ``[hx1d, hx2d, hx3d, hx4d, hx5d, hx6]``, finest first."""
        h = self.conv_in(x)
        skips: list[Tensor] = []
        for k in range(1, self.num_stages + 1):
            if k > 1:
                h = _pool(h)
            h = getattr(self, f"stage{k}")(h)
            skips.append(h)
        feats = [h]  # hx6: the bottom of the U, also a side-output source
        for k in range(self.num_stages - 1, 0, -1):
            skip = skips[k - 1]
            h = getattr(self, f"stage{k}d")(torch.cat([_resize_like(h, skip), skip], dim=1))
            feats.append(h)
        feats.reverse()
        return feats

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """``([sigmoid(d1), ..., sigmoid(d6)], [hx1d, ..., hx5d, hx6])``, as the official model returns.

        Side logits are resized to the input size *before* the sigmoid, matching the
        reference (resizing probabilities instead would give slightly different values).
        """
        feats = self.forward_features(x)
        masks = [torch.sigmoid(_resize_like(getattr(self, f"side{k}")(f), x)) for k, f in enumerate(feats, start=1)]
        return masks, feats

    def predict_mask(self, x: Tensor) -> Tensor:
        """Only the final mask ``sigmoid(d1)``, N x out_ch x H x W: the serving/export path.

        Skips side heads 2..6 and their full-resolution resizes, which the official pipeline
        computes and then discards.
        """
        hx1d = self.forward_features(x)[0]
        return torch.sigmoid(_resize_like(self.side1(hx1d), x))


def _create_isnet(variant: str, **kwargs: Any) -> ISNet:
    # A single construction point, like timm's `_create_*`; variant is kept for error messages.
    try:
        return ISNet(**kwargs)
    except TypeError as e:
        raise TypeError(f"{variant}: {e}") from e


@register_model("isnet")
def isnet(**kwargs: Any) -> ISNet:
    """RMBG-1.4 / DIS layout (44.0 M parameters); loads the official checkpoints strictly."""
    return _create_isnet("isnet", **kwargs)


@register_model("isnet-tiny")
def isnet_tiny(**kwargs: Any) -> ISNet:
    """Same topology at a few channels per stage, for fast export tests; no weights exist."""
    cfg: dict[str, Any] = dict(
        stem_width=8,
        encoder_widths=((4, 8), (4, 8), (8, 16), (8, 16), (8, 16), (8, 16)),
        decoder_widths=((8, 16), (8, 16), (4, 8), (4, 8), (4, 8)),
    )
    cfg.update(kwargs)
    return _create_isnet("isnet-tiny", **cfg)
