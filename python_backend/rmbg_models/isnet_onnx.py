"""IS-Net weights out of an exported ONNX graph (the imgly npm file), into our PyTorch IS-Net.

The imgly file is a ``torch.onnx`` export of the official model with batch-norm folded into
the convolutions, weights stored in float16. The exporter names every node after its module
(``/stage1/rebnconvin/conv_s1/Conv``), so each Conv node's weight and bias initializers map
to ``stage1.rebnconvin.conv_s1.{weight,bias}`` of our definition; the folded batch-norms
become identities (mean 0, variance ``1 - eps``, scale 1, shift 0). The result is a complete,
official-layout state_dict: it loads strictly into ``ISNet`` and into the upstream code alike.

Every conv of ours must be found exactly once, with the same shape, kernel, stride, padding
and dilation, and every Conv node of the graph must be used: a graph of another architecture
fails with the list of what does not fit, never with a partly loaded model.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rmbg_models.checkpoint import CheckpointError

_CONV_NODE = re.compile(r"^/(?P<path>.+)/Conv(?:_\d+)?$")


def onnx_convolutions(graph) -> dict[str, dict]:
    """``module path -> {weight, bias, stride, padding, dilation, groups}`` for every Conv node.

    ``graph`` is an ``onnx.GraphProto``. Weights come back as float32 arrays whatever the
    file stores (the imgly file holds float16: upcasting is exact).
    """
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in graph.initializer}
    convs: dict[str, dict] = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        match = _CONV_NODE.match(node.name)
        if match is None:
            raise CheckpointError(f"Conv node {node.name!r} is not named after a module (/a/b/Conv); "
                                  "this graph was not exported by torch.onnx from an IS-Net")
        path = match["path"].replace("/", ".")
        if path in convs:
            raise CheckpointError(f"two Conv nodes map to module {path!r}")
        params = [node.input[i] if i < len(node.input) else "" for i in (1, 2)]
        missing = [name for name in params if name and name not in inits]
        if missing:
            raise CheckpointError(f"{node.name}: inputs {missing} are not initializers (weights computed in-graph)")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise CheckpointError(f"{node.name}: asymmetric padding {pads} has no nn.Conv2d equivalent")
        convs[path] = {
            "weight": numpy_helper.to_array(inits[params[0]]).astype(np.float32),
            "bias": numpy_helper.to_array(inits[params[1]]).astype(np.float32) if params[1] else None,
            "stride": tuple(attrs.get("strides", [1, 1])),
            "padding": tuple(pads[:2]),
            "dilation": tuple(attrs.get("dilations", [1, 1])),
            "groups": int(attrs.get("group", 1)),
        }
    return convs


def state_dict_from_onnx(model, onnx_path: Path) -> dict:
    """A strict state_dict for ``model`` (an IS-Net variant) from a BN-folded ONNX export of it.

    The export must contain every conv, side heads 2..6 included: a graph of ``forward`` (all
    six masks, as the imgly file), not one of ``predict_mask`` only.
    """
    import onnx
    import torch
    from torch import nn

    convs = onnx_convolutions(onnx.load(str(onnx_path)).graph)
    state = {}
    problems: list[str] = []
    used: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            found = convs.get(name)
            if found is None:
                problems.append(f"no Conv node for {name}")
                continue
            used.add(name)
            ours = {"weight": tuple(module.weight.shape), "stride": module.stride, "padding": module.padding,
                    "dilation": module.dilation, "groups": module.groups}
            theirs = {"weight": found["weight"].shape, **{k: found[k] for k in ("stride", "padding", "dilation",
                                                                                 "groups")}}
            if ours != theirs:
                problems.append(f"{name}: model {ours} vs graph {theirs}")
                continue
            state[f"{name}.weight"] = torch.from_numpy(found["weight"])
            bias = found["bias"] if found["bias"] is not None else np.zeros(module.out_channels, np.float32)
            if module.bias is None and found["bias"] is not None:
                problems.append(f"{name}: the graph has a bias, the model's conv has none")
            elif module.bias is not None:
                state[f"{name}.bias"] = torch.from_numpy(bias)
        elif isinstance(module, nn.BatchNorm2d):
            # Folded into the preceding conv: an identity up to float32 rounding (< 1e-7 relative).
            n = module.num_features
            state[f"{name}.weight"] = torch.ones(n)
            state[f"{name}.bias"] = torch.zeros(n)
            state[f"{name}.running_mean"] = torch.zeros(n)
            state[f"{name}.running_var"] = torch.full((n,), 1.0 - module.eps)
            state[f"{name}.num_batches_tracked"] = torch.zeros((), dtype=torch.int64)
    problems += [f"Conv node for {path} has no module in the model" for path in sorted(set(convs) - used)]
    if problems:
        shown = "; ".join(problems[:12]) + (f" ... ({len(problems)} in all)" if len(problems) > 12 else "")
        raise CheckpointError(f"{onnx_path} does not fit {type(model).__name__}: {shown}")
    return state
