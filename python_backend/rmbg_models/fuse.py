"""Inference-only rewrites of our definitions: batch-norm folded into the preceding conv.

In eval mode a BatchNorm right after a convolution is an affine map per output channel, so it
can be merged into the conv's weights and bias. On a GPU that removes one full read and
write of every such activation (IS-Net has 112 of them, at up to 512x512x64 per image).
Which (conv, bn) pairs qualify is declared by each block (``conv_bn_pairs``: the BN is applied
directly to that conv's output, nothing in between), plus any ``nn.Sequential`` in which a
``Conv2d`` is immediately followed by a ``BatchNorm2d``. The folded model has a different
state_dict (no BN entries): it is for running, never for saving as a checkpoint.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def _pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for prefix, module in model.named_modules():
        base = f"{prefix}." if prefix else ""
        for conv, bn in getattr(type(module), "conv_bn_pairs", ()):
            pairs.append((base + conv, base + bn))
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (conv_name, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    pairs.append((base + conv_name, base + bn_name))
    return pairs


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every declared (conv, BatchNorm2d) pair of ``model`` in place; returns how many.

    The model must be in eval mode (running statistics are what gets folded).
    """
    if model.training:
        raise ValueError("fold_batchnorm needs an eval-mode model: call model.eval() first")
    count = 0
    for conv_path, bn_path in _pairs(model):
        conv, bn = model.get_submodule(conv_path), model.get_submodule(bn_path)
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"{conv_path} -> {bn_path} is declared foldable but is {type(conv).__name__} -> "
                            f"{type(bn).__name__}")
        _set(model, conv_path, fuse_conv_bn_eval(conv, bn))
        _set(model, bn_path, nn.Identity())
        count += 1
    return count
