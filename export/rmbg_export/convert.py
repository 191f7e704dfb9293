"""Make a published ONNX file servable: float32 throughout, one mask output, dynamic batch.

The IMG.LY IS-Net file stores float16 weights with 91 Cast nodes around float32 resizes and
returns 12 outputs (six masks, six feature maps) at a fixed batch of 1. For serving we want
a clean float32 graph (no casts for the CPU to execute, no rounding of the weights beyond
what the file already has), only the final mask, and a batch axis the dynamic batcher can use.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from rmbg_backend.contract import ENGINE_INPUT, ENGINE_OUTPUT

_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16)


def _upcast_tensor(t: TensorProto) -> TensorProto:
    if t.data_type != TensorProto.FLOAT16:
        return t
    arr = numpy_helper.to_array(t).astype(np.float32)
    return numpy_helper.from_array(arr, t.name)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    for node in g.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def to_float32(model: onnx.ModelProto) -> onnx.ModelProto:
    """Upcast float16 initializers/constants and drop the float<->float16 Casts."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    types = _elem_types(model)
    g = model.graph
    for i, init in enumerate(g.initializer):
        g.initializer[i].CopyFrom(_upcast_tensor(init))
    alias: dict[str, str] = {}
    kept = []
    for node in g.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    attr.t.CopyFrom(_upcast_tensor(attr.t))
        if node.op_type == "Cast":
            to = next(a.i for a in node.attribute if a.name == "to")
            if to in _FLOATS and types.get(node.input[0]) in _FLOATS:
                alias[node.output[0]] = node.input[0]
                continue
        kept.append(node)

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    outputs = {o.name for o in g.output}
    rename: dict[str, str] = {}
    for out in outputs & set(alias):
        rename[resolve(out)] = out  # the producer now writes the graph output directly
    for node in kept:
        for i, name in enumerate(node.input):
            target = resolve(name)
            node.input[i] = rename.get(target, target)
        for i, name in enumerate(node.output):
            node.output[i] = rename.get(name, name)
    del g.node[:]
    g.node.extend(kept)
    del g.value_info[:]
    for v in (*g.input, *g.output):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT16:
            v.type.tensor_type.elem_type = TensorProto.FLOAT
    return model


def keep_single_output(model: onnx.ModelProto, output: str, new_name: str) -> onnx.ModelProto:
    """Keep one graph output (renamed) and every node it needs; drop the rest."""
    g = model.graph
    names = [o.name for o in g.output]
    if output not in names:
        raise ValueError(f"output {output!r} not in graph outputs {names}")
    keep_out = next(o for o in g.output if o.name == output)
    del g.output[:]
    g.output.append(keep_out)
    producers = {o: n for n in g.node for o in n.output}
    needed, stack, live = set(), [output], []
    while stack:
        name = stack.pop()
        node = producers.get(name)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(i for i in node.input if i)
    live = [n for n in g.node if id(n) in needed]
    used = {i for n in live for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.node[:]
    g.node.extend(live)
    del g.initializer[:]
    g.initializer.extend(inits)
    if new_name != output:
        for node in g.node:
            for i, name in enumerate(node.output):
                if name == output:
                    node.output[i] = new_name
        g.output[0].name = new_name
    return model


def set_dynamic_batch(model: onnx.ModelProto, dim_name: str = "batch") -> onnx.ModelProto:
    for v in (*model.graph.input, *model.graph.output):
        dim = v.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = dim_name
    return model


def rename_input(model: onnx.ModelProto, old: str, new: str) -> onnx.ModelProto:
    if old == new:
        return model
    for v in model.graph.input:
        if v.name == old:
            v.name = new
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
    return model


def prepare_for_serving(model: onnx.ModelProto, output: str | None = None) -> onnx.ModelProto:
    """float32 + first (or named) output as ``mask`` + input ``input`` + dynamic batch."""
    model = to_float32(model)
    model = keep_single_output(model, output or model.graph.output[0].name, ENGINE_OUTPUT)
    model = rename_input(model, model.graph.input[0].name, ENGINE_INPUT)
    model = set_dynamic_batch(model)
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    return model
