"""`rmbg export` end to end: the ONNX file reproduces the reference golden; fp16 stays close."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rmbg_cli.main import main
from tests.conftest import REFERENCE


@pytest.mark.slow
def test_export_birefnet_lite_matches_golden(tmp_path, capsys, caplog):
    out = tmp_path / "x.onnx"
    caplog.set_level("INFO")
    assert main(["export", "--model", "birefnet-lite", "--weights", "synthetic", "--size", "512", "512",
                 "-o", str(out)]) == 0
    assert "vs_source_max_abs" in capsys.readouterr().out
    assert "SYNTHETIC" in caplog.text and "MEANINGLESS" in caplog.text
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["rmbg.source"] == "synthetic" and '"height":512' in meta["rmbg.spec"]
    assert model.opset_import[0].version >= 17
    assert [o.name for o in model.graph.output] == ["mask"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    golden = np.load(REFERENCE / "birefnet_lite_golden.npz")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    pred = sess.run(None, {"input": golden["input"]})[0]
    assert np.abs(pred - golden["pred"]).max() <= 1e-3


def test_fp16_export_keeps_float32_io_and_stays_close(tmp_path):
    fp32, fp16 = tmp_path / "a.onnx", tmp_path / "b.onnx"
    args = ["export", "--model", "birefnet-tiny", "--weights", "synthetic", "--size", "256", "256"]
    assert main([*args, "-o", str(fp32)]) == 0
    assert main([*args, "--fp16", "-o", str(fp16)]) == 0
    half = onnx.load(str(fp16))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in half.graph.initializer)
    norms = [n for n in half.graph.node if n.op_type == "LayerNormalization"]
    assert norms, "expected LayerNormalization nodes in a Swin export"
    x = np.random.default_rng(0).normal(size=(2, 3, 256, 256)).astype(np.float32)
    a = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    b = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.isfinite(b).all() and np.abs(a - b).mean() < 5e-3 and np.abs(a - b).max() < 0.1


def test_export_refuses_bad_sizes_and_onnx_sources(tmp_path):
    assert main(["export", "--model", "birefnet-lite", "--weights", "synthetic", "--size", "500", "500",
                 "-o", str(tmp_path / "x.onnx")]) == 1
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert main(["export", "--model", "isnet", "--weights", str(tmp_path / "m.onnx"), "-o",
                 str(tmp_path / "y.onnx")]) == 1


def test_gpu_trt_target_refuses_without_tensorrt(tmp_path, capsys):
    assert main(["build-repo", "--model", "isnet", "--weights", "synthetic", "--target", "gpu-trt",
                 "--out", str(tmp_path / "repo")]) == 1
    assert "TensorRT is not installed" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_full_isnet_export_at_reduced_resolution_matches_pytorch(tmp_path):
    from rmbg_export.export import build_model, export_onnx
    from rmbg_export.sources import resolve
    from rmbg_export.verify import check_onnx

    model = build_model("isnet", resolve("synthetic"))
    path = export_onnx(model, tmp_path / "isnet.onnx", 256, 256)
    report = check_onnx(path, 256, 256, source=model)
    assert report["vs_source_max_abs"] <= 1e-3 and report["batch_vs_single_max_abs"] <= 1e-5


def test_export_fails_on_a_mismatch_with_pytorch(tmp_path, monkeypatch, capsys):
    """A graph that disagrees with PyTorch must not be kept as a success: exit 1, named check."""
    from rmbg_export import export

    real = export.export_onnx

    def corrupted(model, path, *args, **kwargs):
        import torch

        out = real(model, path, *args, **kwargs)
        with torch.no_grad():  # the file is written; now the model it is compared with changes
            next(model.parameters()).mul_(3.0)
        return out

    monkeypatch.setattr(export, "export_onnx", corrupted)
    assert main(["export", "--model", "isnet-tiny", "--weights", "synthetic", "--size", "64", "64",
                 "-o", str(tmp_path / "x.onnx")]) == 1
    assert "does not match PyTorch" in capsys.readouterr().err


def test_gpu_ort_target_writes_a_native_onnxruntime_config(tmp_path):
    from rmbg_backend.families import family
    from rmbg_export.export import export_variant
    from rmbg_export.repository import RepositorySettings, write_repository

    engine = tmp_path / "m.onnx"
    export_variant("isnet-tiny", "synthetic", engine, (64, 64))
    settings = RepositorySettings("gpu-ort", "fp16")
    written = write_repository(tmp_path / "repo", family("isnet").spec(64), engine, settings)
    config = (tmp_path / "repo" / "isnet" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "KIND_GPU" in config and "tensorrt" in config
    assert 'name: "input"' in config and 'name: "mask"' in config
    assert not (tmp_path / "repo" / "isnet" / "1" / "model.py").exists()
    assert (tmp_path / "repo" / "isnet" / "1" / "model.onnx") in written
