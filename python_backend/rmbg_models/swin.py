"""Swin Transformer v1 backbone, in the dense-prediction form BiRefNet uses.

Paper: `Swin Transformer: Hierarchical Vision Transformer using Shifted Windows`
    - https://arxiv.org/abs/2103.14030
    Ze Liu, Yutong Lin, Yue Cao, Han Hu, Yixuan Wei, Zheng Zhang, Stephen Lin, Baining Guo. ICCV 2021.

The detection/segmentation flavour of Swin (the one BiRefNet vendors) differs from the
classification one: it accepts any input size by zero-padding the token map to a multiple
of the window inside every block (after ``norm1``), never shrinks the window for small maps,
always shifts odd blocks by ``window_size // 2`` with the -100 region mask computed on the
padded size, and returns every stage through its own LayerNorm (``norm0`` .. ``norm3``).

Licences: the official Swin code is MIT (Microsoft); BiRefNet (MIT) vendors it. This file is
our own code written from the paper and ``shared/reference/README.md``; only parameter names
are kept so official checkpoints load strictly.

Why our own: the official code computes the window padding, the number of windows, the
shift mask (Python slice assignment) and ``window_reverse``'s batch size with Python
arithmetic on shapes (``int(np.ceil(H / ws))``, ``int(windows.shape[0] / ...)``), which the
ONNX tracer freezes into constants. Here all of it is tensor arithmetic on ``x.shape``
values, so a traced graph keeps dynamic batch, height and width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LayerNorm", "SwinConfig", "SwinTransformer", "window_partition", "window_reverse", "shifted_window_mask"]

# Mask value for token pairs that were not neighbours before the cyclic shift. The official
# code uses -100 (later versions -inf): after softmax both give exactly 0 in float32.
_MASK_VALUE = -100.0


@dataclass(frozen=True)
class SwinConfig:
    """Hyper-parameters of one Swin variant (all stages explicit, nothing looked up by index)."""

    embed_dim: int
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    window_size: int
    patch_size: int = 4
    in_channels: int = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-5

    @property
    def stage_channels(self) -> tuple[int, int, int, int]:
        """Channels of the four stage outputs (doubled by every PatchMerging)."""
        c = self.embed_dim
        return (c, 2 * c, 4 * c, 8 * c)


def _round_up(size: int | Tensor, multiple: int) -> int | Tensor:
    # Works on Python ints (eager) and on traced 0-d tensors alike; no ceil() on floats.
    return (size + multiple - 1) // multiple * multiple


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """``(B, Hp, Wp, C)`` -> ``(B * nWin, ws*ws, C)``, windows in row-major order per image."""
    b, hp, wp, c = x.shape
    x = x.reshape(b, hp // window_size, window_size, wp // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(
    windows: Tensor, window_size: int, batch: int | Tensor, hp: int | Tensor, wp: int | Tensor
) -> Tensor:
    """Inverse of :func:`window_partition`. ``batch`` is passed in, never derived by division."""
    c = windows.shape[-1]
    x = windows.reshape(batch, hp // window_size, wp // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, hp, wp, c)


def shifted_window_mask(
    hp: int | Tensor, wp: int | Tensor, window_size: int, shift: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Additive attention mask ``(nWin, N, N)`` for the shifted blocks of a padded ``hp x wp`` map.

    After the cyclic shift the last ``window_size`` rows (columns) of the map hold tokens from
    up to three original regions: rows ``< hp - ws``, rows in ``[hp - ws, hp - shift)`` and the
    wrapped-around rows ``>= hp - shift``. Tokens attend only within their region. The region id
    is built with comparisons on ``arange`` so that ``hp``/``wp`` may be traced sizes; this also
    covers the single-window case (``hp == ws``), where the first region is empty.
    """
    rows = torch.arange(hp, device=device)
    cols = torch.arange(wp, device=device)
    row_region = (rows >= hp - window_size).long() + (rows >= hp - shift).long()  # 0, 1, 2
    col_region = (cols >= wp - window_size).long() + (cols >= wp - shift).long()
    region = (row_region.view(-1, 1) * 3 + col_region.view(1, -1)).to(dtype)  # (hp, wp)
    region_windows = window_partition(region.view(1, hp, wp, 1), window_size)[..., 0]  # (nWin, N)
    different = region_windows.unsqueeze(1) != region_windows.unsqueeze(2)
    return torch.zeros_like(different, dtype=dtype).masked_fill(different, _MASK_VALUE)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` that computes in float32 whatever the activations' dtype.

    Swin's LayerNorm overflows in float16 (the variance of wide activations), so a reduced-
    precision model normalises in float32 and casts the result back. On float32 input it is
    exactly ``nn.LayerNorm`` (the exported graph is unchanged). Parameter names are the same,
    so checkpoints load as before.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32:
            return super().forward(x)
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` conv + LayerNorm; pads right/bottom to a patch multiple."""

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int, eps: float) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = LayerNorm(embed_dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> channels-last tokens ``(B, H/4, W/4, C)``."""
        h, w = x.shape[-2], x.shape[-1]
        ps = self.patch_size
        x = F.pad(x, (0, _round_up(w, ps) - w, 0, _round_up(h, ps) - h))
        x = self.proj(x).permute(0, 2, 3, 1)
        return self.norm(x)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``ws x ws`` windows with a relative position bias.

    The bias table holds one learned value per head for each of the ``(2ws-1)^2`` relative
    offsets; ``relative_position_index`` (int64 buffer, part of the state_dict as in the
    official checkpoints) maps every (query, key) pair of a window to its table row.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", self._relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    @staticmethod
    def _relative_position_index(ws: int) -> Tensor:
        """Index ``(N, N)`` of (dy + ws - 1) * (2ws - 1) + (dx + ws - 1) for tokens in row-major order."""
        ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        dy = ys[:, None] - ys[None, :] + ws - 1
        dx = xs[:, None] - xs[None, :] + ws - 1
        return (dy * (2 * ws - 1) + dx).to(torch.int64)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x``: ``(B*nWin, N, C)``; ``mask``: ``(nWin, N, N)`` additive, or None."""
        n, c = x.shape[1], x.shape[2]
        heads = self.num_heads
        qkv = self.qkv(x).reshape(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B*nWin, heads, N, d)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, heads).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            num_windows = mask.shape[0]
            attn = attn.view(-1, num_windows, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, heads, n, n)
        # Softmax in float32 in a reduced-precision model (the -100 mask and the range of the
        # logits need it); a no-op branch for float32, so exports do not change.
        attn = attn.softmax(dim=-1) if attn.dtype == torch.float32 else attn.float().softmax(dim=-1).to(v.dtype)
        x = (attn @ v).transpose(1, 2).reshape(-1, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    """Linear -> exact (erf) GELU -> Linear. The tanh approximation changes masks by ~4e-4."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention block on a channels-last map ``(B, H, W, C)``.

    The map is padded with zeros *after* ``norm1`` (as the official code does): padded tokens
    then contribute ``qkv`` biases as keys/values, which is part of the trained function, so
    the order norm -> pad matters and is kept.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, cfg: SwinConfig) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift = shift
        self.norm1 = LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.attn = WindowAttention(dim, num_heads, window_size, cfg.qkv_bias)
        self.norm2 = LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: Tensor, shift_mask: Tensor | None) -> Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        hp, wp = _round_up(h, ws), _round_up(w, ws)
        y = F.pad(self.norm1(x), (0, 0, 0, wp - w, 0, hp - h))
        if self.shift > 0:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, ws), shift_mask if self.shift > 0 else None)
        y = window_reverse(y, ws, b, hp, wp)
        if self.shift > 0:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y[:, :h, :w, :]
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> channels (order x0=(0,0), x1=(1,0), x2=(0,1), x3=(1,1)) -> LN -> Linear.

    Odd sizes are zero-padded at the bottom/right first, so the next stage is ceil(H/2).
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = LayerNorm(4 * dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[1], x.shape[2]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """``depth`` blocks alternating plain / shifted windows, then optional PatchMerging."""

    def __init__(self, dim: int, depth: int, num_heads: int, downsample: bool, cfg: SwinConfig) -> None:
        super().__init__()
        self.window_size = cfg.window_size
        self.shift = cfg.window_size // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, cfg.window_size, self.shift if i % 2 == 1 else 0, cfg) for i in range(depth)
        )
        self.downsample = PatchMerging(dim, cfg.layer_norm_eps) if downsample else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (stage output before merging, input of the next stage)."""
        ws = self.window_size
        mask = None
        if len(self.blocks) > 1:  # the shift mask depends only on the padded size: build it once per stage
            hp, wp = _round_up(x.shape[1], ws), _round_up(x.shape[2], ws)
            mask = shifted_window_mask(hp, wp, ws, self.shift, x.device, x.dtype)
        for blk in self.blocks:
            x = blk(x, mask)
        return x, (self.downsample(x) if self.downsample is not None else x)


class SwinTransformer(nn.Module):
    """Four-stage Swin returning ``(B, C_i, H_i, W_i)`` features at strides 4, 8, 16, 32.

    Tokens stay channels-last ``(B, H, W, C)`` between blocks (no flatten/view with a saved
    H and W), which keeps every reshape derivable from the tensor itself.
    """

    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_channels, cfg.embed_dim, cfg.layer_norm_eps)
        channels = cfg.stage_channels
        last = len(channels) - 1
        self.layers = nn.ModuleList(
            SwinStage(dim, depth, heads, downsample=i < last, cfg=cfg)
            for i, (dim, depth, heads) in enumerate(zip(channels, cfg.depths, cfg.num_heads, strict=True))
        )
        # One LayerNorm per returned stage, registered after the stages (checkpoint order).
        self.norm0 = LayerNorm(channels[0], eps=cfg.layer_norm_eps)
        self.norm1 = LayerNorm(channels[1], eps=cfg.layer_norm_eps)
        self.norm2 = LayerNorm(channels[2], eps=cfg.layer_norm_eps)
        self.norm3 = LayerNorm(channels[3], eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.patch_embed(x)
        outs = []
        for stage, norm in zip(self.layers, (self.norm0, self.norm1, self.norm2, self.norm3), strict=True):
            out, x = stage(x)
            outs.append(norm(out).permute(0, 3, 1, 2).contiguous())
        return outs
