"""The TensorRT builder's float32 layer selection, on a stand-in for ``tensorrt.INetworkDefinition``.

TensorRT cannot be installed here, so the network below is a small fake with the same surface
the builder touches (``num_layers``, ``get_layer``, ``layer.name/type/precision/num_outputs``,
``set_output_type``). ``LayerType`` is a Python enum: like TensorRT's pybind11 enum its
``str()`` is ``LayerType.SOFTMAX`` and its ``.name`` is ``SOFTMAX``, the mismatch that made
the old matching select nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import pytest

from rmbg_export.builders import TensorRTUnavailable, check_available, keeps_fp32, pin_fp32_layers


class LayerType(enum.Enum):
    CONVOLUTION = 0
    ACTIVATION = 1
    SOFTMAX = 2
    NORMALIZATION = 3
    REDUCE = 4
    ELEMENTWISE = 5
    MATRIX_MULTIPLY = 6


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1


@dataclass
class FakeLayer:
    name: str
    type: LayerType
    num_outputs: int = 1
    precision: DataType = DataType.HALF
    output_types: dict[int, DataType] = field(default_factory=dict)

    def set_output_type(self, index: int, dtype: DataType) -> None:
        if not 0 <= index < self.num_outputs:
            raise IndexError(index)
        self.output_types[index] = dtype


@dataclass
class FakeNetwork:
    layers: list[FakeLayer]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> FakeLayer:
        return self.layers[index]


def swin_like_network() -> FakeNetwork:
    """Layer names as TensorRT derives them from our exported BiRefNet's ONNX node names."""
    return FakeNetwork([
        FakeLayer("/bb/patch_embed/proj/Conv", LayerType.CONVOLUTION),
        FakeLayer("/bb/patch_embed/norm/LayerNormalization", LayerType.NORMALIZATION),
        FakeLayer("/bb/layers.0/blocks.0/attn/qkv/MatMul", LayerType.MATRIX_MULTIPLY),
        FakeLayer("/bb/layers.0/blocks.0/attn/Softmax", LayerType.SOFTMAX),
        FakeLayer("/bb/layers.0/blocks.0/mlp/act/Gelu", LayerType.ACTIVATION),
        FakeLayer("/squeeze_module/dec_att/global_avg_pool/GlobalAveragePool", LayerType.REDUCE),
        FakeLayer("/decoder/Add", LayerType.ELEMENTWISE, num_outputs=1),
        # A decomposed LayerNorm (older exporters) only shows itself by name.
        FakeLayer("/bb/norm0/layer_norm/Pow", LayerType.ELEMENTWISE),
    ])


def test_str_of_the_enum_is_what_the_old_code_compared():
    assert str(LayerType.SOFTMAX) == "LayerType.SOFTMAX" and LayerType.SOFTMAX.name == "SOFTMAX"


@pytest.mark.parametrize(("name", "layer_type", "expected"), [
    ("node_17", LayerType.SOFTMAX, True),
    ("node_18", LayerType.NORMALIZATION, True),
    ("node_19", LayerType.REDUCE, True),
    ("node_20", LayerType.CONVOLUTION, False),
    ("node_21", LayerType.ELEMENTWISE, False),
    ("/bb/layers.1/blocks.0/norm1/LayerNorm_mean", LayerType.ELEMENTWISE, True),
    ("/attn/softmax_exp", LayerType.ELEMENTWISE, True),
])
def test_keeps_fp32_matches_the_enum_member_name_and_node_names(name, layer_type, expected):
    assert keeps_fp32(name, layer_type) is expected


def test_keeps_fp32_also_accepts_a_plain_string_type():
    assert keeps_fp32("x", "LayerType.SOFTMAX") and not keeps_fp32("x", "LayerType.CONVOLUTION")


def test_pin_fp32_layers_sets_precision_and_every_output_type():
    network = swin_like_network()
    network.layers.append(FakeLayer("/bb/layers.0/blocks.0/attn/TopK", LayerType.REDUCE, num_outputs=2))
    pinned = pin_fp32_layers(network, DataType.FLOAT)
    assert pinned == [
        "/bb/patch_embed/norm/LayerNormalization",
        "/bb/layers.0/blocks.0/attn/Softmax",
        "/squeeze_module/dec_att/global_avg_pool/GlobalAveragePool",
        "/bb/norm0/layer_norm/Pow",
        "/bb/layers.0/blocks.0/attn/TopK",
    ]
    for layer in network.layers:
        if layer.name in pinned:
            assert layer.precision is DataType.FLOAT
            assert layer.output_types == dict.fromkeys(range(layer.num_outputs), DataType.FLOAT)
        else:
            assert layer.precision is DataType.HALF and layer.output_types == {}


def test_check_available_refuses_clearly_without_tensorrt():
    with pytest.raises(TensorRTUnavailable, match="--target cpu"):
        check_available()
