"""Conversion of a published fp16 ONNX into our serving form, on a small graph of the same shape."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from rmbg_export.convert import prepare_for_serving


def fp16_graph() -> onnx.ModelProto:
    """input(f32) -> Cast f16 -> Conv(f16 w) -> Cast f32 -> Resize -> Cast f16 -> Sigmoid -> Cast f32 -> output,
    plus a side output, at a fixed batch of 1: the structure of the IMG.LY IS-Net file."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(1, 3, 3, 3)).astype(np.float16), "w")
    b = numpy_helper.from_array(np.array([0.1], np.float16), "b")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        helper.make_node("Cast", ["input"], ["x16"], to=TensorProto.FLOAT16),
        helper.make_node("Conv", ["x16", "w", "b"], ["c16"], pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["c16"], ["c32"], to=TensorProto.FLOAT),
        helper.make_node("Resize", ["c32", "", "scales"], ["r32"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Cast", ["r32"], ["r16"], to=TensorProto.FLOAT16),
        helper.make_node("Sigmoid", ["r16"], ["s16"]),
        helper.make_node("Cast", ["s16"], ["output"], to=TensorProto.FLOAT),
        helper.make_node("Relu", ["c32"], ["side"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 16, 16]),
         helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 1, 8, 8])],
        [w, b, scales],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)


def run(model: onnx.ModelProto, x: np.ndarray, name: str) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([name], {"input": x})[0]


def test_conversion_is_float32_single_output_dynamic_batch():
    src = fp16_graph()
    out = prepare_for_serving(src)
    ops = [n.op_type for n in out.graph.node]
    assert "Cast" not in ops and "Relu" not in ops  # casts dropped, side branch pruned
    assert all(t.data_type == TensorProto.FLOAT for t in out.graph.initializer)
    assert [o.name for o in out.graph.output] == ["mask"]
    assert out.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    ref = run(src, x, "output")
    got = run(out, x, "mask")
    assert np.abs(ref - got).max() < 2e-3  # fp16 arithmetic in the source, fp32 in ours
    both = run(out, np.concatenate([x, x * 0.5]), "mask")
    np.testing.assert_allclose(both[:1], got, atol=1e-6)


def test_unknown_output_is_an_error():
    from rmbg_export.convert import keep_single_output

    with pytest.raises(ValueError, match="not in graph outputs"):
        keep_single_output(fp16_graph(), "nope", "mask")
