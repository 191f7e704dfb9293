"""The fp16 pass over an ONNX graph: matrix products in float16, everything else in float32.

The heavy ops get float16 weights and Casts around them; normalisation, softmax, resizes and
sampling keep float32 (Swin's LayerNorm overflows in float16), as do the graph's inputs and
outputs, so the serving contract is unchanged. Types are consistent by construction, so the
file loads in onnxruntime and TensorRT alike (onnxconverter-common produced wrong types here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FP16_OPS = frozenset({"Conv", "MatMul", "Gemm", "ConvTranspose"})


def to_fp16(path: Path) -> None:
    """Rewrite ``path`` in place."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    users: dict[str, set[str]] = {}
    for node in g.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    half_inits: dict[str, str] = {}
    casts: dict[str, str] = {}
    nodes = []

    def half_input(name: str) -> str:
        if name in inits and inits[name].data_type == TensorProto.FLOAT:
            if name not in half_inits:
                arr = numpy_helper.to_array(inits[name]).astype(np.float16)
                half_name = name if users[name] <= FP16_OPS else f"{name}__fp16"
                if half_name == name:
                    inits[name].CopyFrom(numpy_helper.from_array(arr, name))
                else:
                    g.initializer.append(numpy_helper.from_array(arr, half_name))
                half_inits[name] = half_name
            return half_inits[name]
        if name not in casts:
            casts[name] = f"{name}__fp16"
            nodes.append(helper.make_node("Cast", [name], [casts[name]], to=TensorProto.FLOAT16))
        return casts[name]

    for node in g.node:
        if node.op_type in FP16_OPS:
            for i, name in enumerate(node.input):
                if name:
                    node.input[i] = half_input(name)
            out = node.output[0]
            node.output[0] = f"{out}__fp16"
            casts[out] = node.output[0]  # a following fp16 op reads the half tensor directly
            nodes.append(node)
            nodes.append(helper.make_node("Cast", [node.output[0]], [out], to=TensorProto.FLOAT))
        else:
            nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
