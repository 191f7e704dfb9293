"""IS-Net weights read out of an ONNX export (BN folded) into our PyTorch IS-Net.

The mapping is checked twice: on our own tiny variant exported by torch.onnx (BN folded by the
exporter, exactly as in the imgly file) and on the real imgly weights, where our model on the
torch engine must reproduce the served ONNX graph on the eval photos at the model's 1024x1024.
PyTorch IS-Net takes about 15 s per 1024x1024 photo on the 2 shared cores here, so by default
the real-weights check covers 2 photos; RMBG_PARITY_PHOTOS=all runs all 31 (about 10 minutes).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from rmbg_export.export import build_model, export_onnx
from rmbg_export.sources import resolve
from rmbg_models import create_model
from rmbg_models.checkpoint import CheckpointError, load_checkpoint
from rmbg_models.isnet_onnx import onnx_convolutions, state_dict_from_onnx
from rmbg_models.reference import synthetic_state_dict

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """isnet-tiny's full forward (all six side heads, as in the imgly file), BN folded by the exporter."""
    model = create_model("isnet-tiny")
    model.load_state_dict(synthetic_state_dict(model))
    path = tmp_path_factory.mktemp("onnx") / "isnet-tiny.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(path), dynamo=False, opset_version=17)
    return model.eval(), path


def test_exported_graph_has_bn_folded_and_module_named_convs(tiny_export):
    import onnx

    model, path = tiny_export
    graph = onnx.load(str(path)).graph
    assert not [n for n in graph.node if n.op_type == "BatchNormalization"]
    convs = onnx_convolutions(graph)
    assert len(convs) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert convs["stage5.rebnconv3.conv_s1"]["dilation"] == (4, 4)
    assert convs["conv_in"]["stride"] == (2, 2)


def test_weights_mapped_back_reproduce_the_model(tiny_export):
    model, path = tiny_export
    fresh = create_model("isnet-tiny")
    load_checkpoint(fresh, state_dict_from_onnx(fresh, path))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)) - 0.5
    with torch.no_grad():
        torch.testing.assert_close(fresh.predict_mask(x), model.predict_mask(x), rtol=0, atol=2e-6)


def test_a_graph_of_other_widths_is_refused_with_the_list(tiny_export):
    _, path = tiny_export
    with pytest.raises(CheckpointError, match=r"conv_in: model \{'weight': \(64, 3, 3, 3\)") as info:
        state_dict_from_onnx(create_model("isnet"), path)
    assert "in all" in str(info.value)


def test_a_mask_only_export_lacks_the_side_heads(tiny_export, tmp_path):
    model, _ = tiny_export
    path = export_onnx(model, tmp_path / "mask-only.onnx", 64, 64)
    with pytest.raises(CheckpointError, match="no Conv node for side2"):
        state_dict_from_onnx(create_model("isnet-tiny"), path)


def _parity_photos(pairs):
    wanted = os.environ.get("RMBG_PARITY_PHOTOS", "2")
    if wanted == "all":
        return pairs
    # a person, an ECSSD object and a DIS-style thin structure by default
    picked = [pairs[0], next(p for p in pairs if p.id.startswith("ecssd")), pairs[-1]]
    return picked[: int(wanted)] if int(wanted) <= 3 else pairs[: int(wanted)]


@pytest.mark.slow
def test_imgly_weights_on_the_torch_engine_match_the_served_onnx(pairs, record_property):
    """Our IS-Net + the mapped imgly weights vs the cpu target's ONNX graph, per eval photo."""
    from rmbg_backend.engines import OnnxEngine
    from rmbg_backend.families import family
    from rmbg_backend.resize import to_model_input, to_model_pixels
    from rmbg_backend.torch_engine import TorchEngine, TorchSettings
    from rmbg_export.builders import servable_onnx
    from rmbg_export.torch_weights import torch_weights_file

    weights = resolve("imgly-isnet")
    spec = family("isnet").spec()
    path, variant = torch_weights_file("isnet", weights)
    assert variant == "isnet"
    engine = TorchEngine(path, spec, TorchSettings(variant, "f32", "none", "cpu", max_batch=1))
    onnx_engine = OnnxEngine(str(servable_onnx(family("isnet"), weights, spec)))
    diffs = {}
    for p in _parity_photos(pairs):
        rgb = np.asarray(Image.open(p.image).convert("RGB"))
        ours = engine.run(to_model_pixels(rgb, spec)[None])
        reference = onnx_engine.run(to_model_input(rgb, spec)[None])
        diffs[p.id] = (float(np.abs(ours - reference).mean()), float(np.abs(ours - reference).max()))
    record_property("isnet_torch_vs_onnx", diffs)
    for key, (mean, peak) in diffs.items():
        print(f"{key}: mean |torch - onnx| {mean * 255:.5f}/255, max {peak * 255:.4f}/255")
    assert max(mean for mean, _ in diffs.values()) <= 1 / 255, diffs


def test_build_model_reads_isnet_out_of_the_imgly_onnx_and_refuses_birefnet():
    from rmbg_export.sources import SourceError

    weights = resolve("imgly-isnet")
    model = build_model("isnet", weights)
    bn = model.stage1.rebnconvin.bn_s1
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.weight))
    with pytest.raises(SourceError, match="only IS-Net weights"):
        build_model("birefnet-tiny", weights)
