"""Our IS-Net against the official one, via the reference fixtures (shared/reference/README.md).

The full model is filled with the fixtures' deterministic weights and compared with goldens
computed by the official code; the tiny variant checks shapes and the ONNX export path.
Each model runs at most once per input size (the 1024x1024 pass takes seconds on 2 cores).
"""

from __future__ import annotations

import io
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

from rmbg_models import create_model
from rmbg_models.reference import load_schema, reference_image, synthetic_state_dict
from tests.conftest import REFERENCE

# README "Tolerances": >10x the float32 noise, below every structural mistake listed there.
MAX_ABS = 1e-4
MEAN_ABS = 1e-5

TINY_H, TINY_W = 75, 61  # odd on both axes: exercises ceil-mode pooling and exact-size resizes


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def schema() -> dict:
    return load_schema(REFERENCE / "isnet_schema.json")


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(REFERENCE / "isnet_golden.npz") as npz:
        return {name: npz[name] for name in npz.files}


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return create_model("isnet")


@pytest.fixture(scope="module")
def synthetic(model) -> dict[str, Tensor]:
    return synthetic_state_dict(model)


@pytest.fixture(scope="module")
def loaded(model, synthetic) -> nn.Module:
    model.load_state_dict(synthetic, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def small_outputs(loaded, golden) -> tuple[list[Tensor], list[Tensor], Tensor]:
    x = torch.from_numpy(golden["small_input"])
    with torch.no_grad():
        masks, feats = loaded(x)
        mask = loaded.predict_mask(x)
    return masks, feats, mask


def assert_matches_golden(actual: Tensor, expected: np.ndarray, name: str) -> None:
    assert tuple(actual.shape) == expected.shape, name
    diff = np.abs(actual.numpy().astype(np.float64) - expected.astype(np.float64))
    assert diff.max() <= MAX_ABS, f"{name}: max abs {diff.max():.3g}"
    assert diff.mean() <= MEAN_ABS, f"{name}: mean abs {diff.mean():.3g}"


def ceil_pyramid(size: int, levels: int) -> list[int]:
    """Spatial sizes after the stride-2 stem and each ceil-mode pool: 300 -> 150, 75, 38, 19, 10, 5."""
    sizes = [math.ceil(size / 2)]
    while len(sizes) < levels:
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


# --- state_dict layout and the weight fill -------------------------------------------------------


def test_state_dict_matches_schema(model, schema):
    ours = [(name, list(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in model.state_dict().items()]
    ref = [(e["name"], e["shape"], e["dtype"]) for e in schema["entries"]]
    assert len(ours) == schema["num_entries"] == len(ref)
    assert [e["k"] for e in schema["entries"]] == list(range(len(ref)))
    assert ours == ref  # same order too: synthetic_state_dict fills by position


def test_synthetic_fill_matches_schema_checks(synthetic, schema):
    assert list(synthetic) == [e["name"] for e in schema["entries"]]
    for entry in schema["entries"]:
        values = synthetic[entry["name"]].numpy()
        if entry["fill"] == "keep":
            assert values.dtype == np.int64 and int(values.sum()) == entry["check_sum"], entry["name"]
            continue
        assert values.dtype == np.float32, entry["name"]
        flat = values.reshape(-1)
        assert float(flat.astype(np.float64).sum()) == pytest.approx(entry["check_sum"], rel=1e-9), entry["name"]
        assert flat[0] == np.float32(entry["check_first"]), entry["name"]
        assert flat[-1] == np.float32(entry["check_last"]), entry["name"]


# --- fixture inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix, size", [("", (1024, 1024)), ("small_", (300, 200))])
def test_reference_image_and_preprocessing(golden, prefix, size):
    image = reference_image(*size)
    np.testing.assert_array_equal(image.transpose(2, 0, 1), golden[f"{prefix}image_u8_chw"])
    # RMBG-1.4 preprocessing: /255, mean 0.5, std 1.0, in float32; the stored input is bit-identical.
    x = (image.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)) - np.float32(0.5)
    np.testing.assert_array_equal(x, golden[f"{prefix}input"])


# --- goldens ----------------------------------------------------------------------------------


def test_golden_d1_1024(loaded, golden):
    # predict_mask is the exported path; its equality with forward's d1 is checked on the small case.
    with torch.no_grad():
        mask = loaded.predict_mask(torch.from_numpy(golden["input"]))
    assert_matches_golden(mask, golden["d1"], "d1")


@pytest.mark.parametrize("k", range(1, 7))
def test_golden_small_side_outputs(small_outputs, golden, k):
    masks, _, _ = small_outputs
    assert len(masks) == 6
    assert_matches_golden(masks[k - 1], golden[f"small_d{k}"], f"small_d{k}")


def test_small_features_follow_ceil_pyramid(small_outputs):
    _, feats, _ = small_outputs
    hs, ws = ceil_pyramid(300, 6), ceil_pyramid(200, 6)
    assert hs == [150, 75, 38, 19, 10, 5]
    widths = [64, 64, 128, 256, 512, 512]  # hx1d, hx2d, hx3d, hx4d, hx5d, hx6
    assert [tuple(f.shape) for f in feats] == [(1, c, h, w) for c, h, w in zip(widths, hs, ws, strict=True)]


def test_predict_mask_equals_d1(small_outputs):
    masks, _, mask = small_outputs
    torch.testing.assert_close(mask, masks[0], rtol=0, atol=1e-7)


# --- tiny variant: shapes and ONNX export -----------------------------------------------------


class MaskOnly(nn.Module):
    """Single-output wrapper: exporting forward() would make all twelve tensors graph outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.predict_mask(x)


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    net = create_model("isnet-tiny")
    net.load_state_dict(synthetic_state_dict(net), strict=True)  # deterministic, non-degenerate weights
    return net.eval()


@pytest.fixture(scope="module")
def tiny_input() -> Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, TINY_H, TINY_W, generator=gen) - 0.5


def test_tiny_is_small(tiny):
    assert sum(p.numel() for p in tiny.parameters()) < 100_000


def test_tiny_shapes_on_odd_size(tiny, tiny_input):
    x = tiny_input[:2]
    with torch.no_grad():
        masks, feats = tiny(x)
        mask = tiny.predict_mask(x)
    assert [tuple(m.shape) for m in masks] == [(2, 1, TINY_H, TINY_W)] * 6
    assert all(bool(((m >= 0) & (m <= 1)).all()) for m in masks)
    hs, ws = ceil_pyramid(TINY_H, 6), ceil_pyramid(TINY_W, 6)
    assert [tuple(f.shape[2:]) for f in feats] == list(zip(hs, ws, strict=True))
    assert tuple(mask.shape) == (2, 1, TINY_H, TINY_W)
    torch.testing.assert_close(mask, masks[0], rtol=0, atol=1e-7)


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_tiny_onnx_export_dynamic_batch(tiny, tiny_input):
    # The wrapper must be in eval mode too: the exporter restores the *wrapper's* training flag
    # recursively afterwards, which would silently switch the tiny model's BatchNorms to training.
    wrapper = MaskOnly(tiny).eval()
    buf = io.BytesIO()
    torch.onnx.export(
        wrapper,
        (tiny_input[:1],),
        buf,
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["mask"],
        dynamic_axes={"input": {0: "batch"}, "mask": {0: "batch"}},
    )
    assert not tiny.training
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["mask"]

    x = tiny_input.numpy()
    with torch.no_grad():
        expected = tiny.predict_mask(tiny_input[:1]).numpy()
    single = [sess.run(["mask"], {"input": x[i : i + 1]})[0] for i in range(3)]
    assert single[0].shape == (1, 1, TINY_H, TINY_W)
    assert np.abs(single[0] - expected).max() <= 1e-3

    batch = sess.run(["mask"], {"input": x})[0]
    assert batch.shape == (3, 1, TINY_H, TINY_W)
    assert np.abs(batch - np.concatenate(single)).max() <= 1e-5
