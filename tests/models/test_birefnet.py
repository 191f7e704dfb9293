"""Our BiRefNet against the reference fixtures (shared/reference/README.md) and through ONNX.

* Schema: state_dict names, order, shapes and dtypes equal the official ones for Swin-L
  (RMBG-2.0) and Swin-T (lite), and the positional synthetic fill reproduces every entry's
  check values (so the fill is the reference fill, entry by entry).
* Goldens: with that fill, our forward reproduces the official outputs (512x512 and a
  non-square 256x384), including the other patch order's diagnostic output.
* Export: the tiny variant's ``predict_mask`` exports with the legacy (TorchScript) ONNX
  exporter with dynamic batch/height/width and runs in onnxruntime at other shapes.

Each model runs once per input (module-scoped fixtures); Swin-L tests are marked slow but
run by default.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from rmbg_models import create_model, list_models
from rmbg_models.birefnet import BiRefNet, stack_patches
from rmbg_models.reference import load_schema, synthetic_state_dict
from tests.conftest import REFERENCE

PRED_MAX, PRED_MEAN, LOGITS_MAX = 1e-4, 1e-5, 1e-3


@pytest.fixture(scope="module", autouse=True)
def _threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _synthetic(name: str, **kwargs) -> BiRefNet:
    model = create_model(name, **kwargs)
    model.load_state_dict(synthetic_state_dict(model), strict=True)
    return model


def _run(model: BiRefNet, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in model(torch.from_numpy(x))]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def assert_close(ours: np.ndarray, golden: np.ndarray, max_abs: float, mean_abs: float | None = None) -> None:
    assert ours.shape == golden.shape
    diff = np.abs(ours.astype(np.float64) - golden.astype(np.float64))
    assert diff.max() <= max_abs, f"max abs diff {diff.max():.3g} > {max_abs}"
    if mean_abs is not None:
        assert diff.mean() <= mean_abs, f"mean abs diff {diff.mean():.3g} > {mean_abs}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(REFERENCE / "birefnet_golden.npz") as z:
        return dict(z)


@pytest.fixture(scope="module")
def lite_golden() -> dict[str, np.ndarray]:
    with np.load(REFERENCE / "birefnet_lite_golden.npz") as z:
        return dict(z)


@pytest.fixture(scope="module")
def swin_l() -> BiRefNet:
    return _synthetic("birefnet")


@pytest.fixture(scope="module")
def swin_l_out(swin_l, golden) -> list[np.ndarray]:
    return _run(swin_l, golden["input"])


@pytest.fixture(scope="module")
def swin_l_small_out(swin_l, golden) -> list[np.ndarray]:
    return _run(swin_l, golden["small_input"])


@pytest.fixture(scope="module")
def swin_l_small_other_order(swin_l, golden) -> list[np.ndarray]:
    swin_l.patch_order = "new"
    try:
        return _run(swin_l, golden["small_input"])
    finally:
        swin_l.patch_order = "rmbg2"


@pytest.fixture(scope="module")
def lite() -> BiRefNet:
    return _synthetic("birefnet-lite")


@pytest.fixture(scope="module")
def tiny() -> BiRefNet:
    return _synthetic("birefnet-tiny")


# --------------------------------------------------------------------------- schema


def check_against_schema(model: BiRefNet, schema_file: str) -> None:
    """Names/order/shapes/dtypes, then every entry's fill check values (model already filled)."""
    schema = load_schema(REFERENCE / schema_file)
    state = model.state_dict()
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()]
    ref = [(e["name"], e["shape"], e["dtype"]) for e in schema["entries"]]
    assert len(ours) == schema["num_entries"] == len(ref)
    mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(ours, ref, strict=True)) if a != b]
    assert not mismatches, f"{len(mismatches)} entries differ, first: {mismatches[:3]}"

    bad = []
    for entry in schema["entries"]:
        tensor = state[entry["name"]]
        if entry["fill"] == "keep":
            if int(tensor.sum()) != entry["check_sum"]:
                bad.append((entry["name"], "sum", int(tensor.sum()), entry["check_sum"]))
            continue
        flat = tensor.reshape(-1)
        total = float(flat.double().sum())
        if not math.isclose(total, entry["check_sum"], rel_tol=1e-9, abs_tol=1e-9):
            bad.append((entry["name"], "sum", total, entry["check_sum"]))
        if float(flat[0]) != entry["check_first"] or float(flat[-1]) != entry["check_last"]:
            bad.append((entry["name"], "first/last", float(flat[0]), float(flat[-1])))
    assert not bad, f"{len(bad)} entries with wrong check values, first: {bad[:3]}"


@pytest.mark.slow
def test_swin_l_state_dict_matches_schema(swin_l) -> None:
    check_against_schema(swin_l, "birefnet_schema.json")


def test_lite_state_dict_matches_schema(lite) -> None:
    check_against_schema(lite, "birefnet_lite_schema.json")


def test_variants_registered() -> None:
    assert {"birefnet", "birefnet-lite", "birefnet-tiny"} <= set(list_models())
    with pytest.raises(ValueError, match="patch order"):
        create_model("birefnet-tiny", patch_order="column-major")


# --------------------------------------------------------------------------- goldens (Swin-L)


@pytest.mark.slow
def test_swin_l_pred_512(swin_l_out, golden) -> None:
    logits = swin_l_out[-1]
    assert_close(_sigmoid(logits), golden["pred"], PRED_MAX, PRED_MEAN)
    assert_close(logits, golden["pred_logits"], LOGITS_MAX)


@pytest.mark.slow
def test_swin_l_side_outputs_512(swin_l_out, golden) -> None:
    assert len(swin_l_out) == 4
    for ours, key in zip(swin_l_out[:3], ("aux_m4_logits", "aux_m3_logits", "aux_m2_logits"), strict=True):
        assert_close(ours, golden[key], LOGITS_MAX)


@pytest.mark.slow
def test_swin_l_pred_non_square(swin_l_small_out, golden) -> None:
    logits = swin_l_small_out[-1]
    assert_close(_sigmoid(logits), golden["small_pred"], PRED_MAX, PRED_MEAN)
    assert_close(logits, golden["small_pred_logits"], LOGITS_MAX)


@pytest.mark.slow
def test_swin_l_other_patch_order_reproduces_diagnostic(swin_l_small_other_order, swin_l_small_out, golden) -> None:
    pred = _sigmoid(swin_l_small_other_order[-1])
    assert_close(pred, golden["small_pred_wrong_patch_order"], PRED_MAX, PRED_MEAN)
    # And it really is a different function of the same weights.
    assert np.abs(pred - golden["small_pred"]).max() > 0.1


# --------------------------------------------------------------------------- goldens (lite)


def test_lite_pred_512_and_non_square(lite, lite_golden) -> None:
    for inp, key in (("input", "pred"), ("small_input", "small_pred")):
        assert_close(_sigmoid(_run(lite, lite_golden[inp])[-1]), lite_golden[key], PRED_MAX, PRED_MEAN)


# --------------------------------------------------------------------------- patches and API


@pytest.mark.parametrize("order", ["rmbg2", "new"])
def test_stack_patches_matches_explicit_tiling(order: str) -> None:
    b, c, grid, ph, pw = 2, 3, 4, 2, 3
    x = torch.randn(b, c, grid * ph, grid * pw)
    got = stack_patches(x, grid, order)  # type: ignore[arg-type]
    assert got.shape == (b, c * grid * grid, ph, pw)
    for row in range(grid):
        for col in range(grid):
            tile = x[:, :, row * ph : (row + 1) * ph, col * pw : (col + 1) * pw]
            for ch in range(c):
                # rmbg2: channel = ((col * n_rows) + row) * 3 + c;  new: (c * hg + row) * wg + col
                idx = (col * grid + row) * c + ch if order == "rmbg2" else (ch * grid + row) * grid + col
                torch.testing.assert_close(got[:, idx], tile[:, ch], rtol=0, atol=0)


def test_predict_mask_is_sigmoid_of_final_logits(tiny) -> None:
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = tiny(x)
        mask = tiny.predict_mask(x)
    assert [tuple(t.shape) for t in out] == [(2, 1, 2, 3), (2, 1, 4, 6), (2, 1, 8, 12), (2, 1, 64, 96)]
    torch.testing.assert_close(mask, torch.sigmoid(out[-1]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="divisible by 32"):
        tiny.predict_mask(torch.randn(1, 3, 64, 80))


# --------------------------------------------------------------------------- ONNX (tiny)


class _MaskOnly(torch.nn.Module):
    def __init__(self, model: BiRefNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict_mask(x)


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("birefnet_onnx") / "birefnet_tiny.onnx"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Traced at a shape used by none of the checks (batch 2, 256x320), so nothing can pass
        # by accident from sizes frozen at trace time.
        torch.onnx.export(
            _MaskOnly(tiny).eval(),
            (torch.randn(2, 3, 256, 320),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["mask"],
            dynamic_axes={
                "input": {0: "batch", 2: "height", 3: "width"},
                "mask": {0: "batch", 2: "height", 3: "width"},
            },
        )
    # A TracerWarning means a shape was turned into a Python number, i.e. frozen into the graph.
    tracer = [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert not tracer, tracer
    return path


def test_onnx_dynamic_batch_and_size(tiny, tiny_onnx) -> None:
    import onnx
    import onnxruntime as ort

    graph = onnx.load(str(tiny_onnx)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert "DeformConv" not in {n.op_type for n in graph.node}

    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    for shape in ((1, 3, 256, 256), (3, 3, 256, 384), (1, 3, 256, 384), (3, 3, 256, 256)):
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            expected = tiny.predict_mask(x).numpy()
        assert expected.std() > 0.01, "degenerate mask: the check would prove little"
        got = session.run(["mask"], {"input": x.numpy()})[0]
        assert_close(got, expected, 1e-3)
        if shape[0] == 3:
            singles = np.concatenate([session.run(["mask"], {"input": x[i : i + 1].numpy()})[0] for i in range(3)])
            assert_close(got, singles, 1e-5)
