"""The repository writer: configs from typed structures, settings from flags, provenance checked."""

from __future__ import annotations

import json

import onnx
import pytest

from rmbg_backend.decode import Limits
from rmbg_backend.families import family
from rmbg_export import metadata
from rmbg_export.export import export_variant
from rmbg_export.repository import RepositorySettings, Tensor, engine_config, write_repository
from rmbg_server.launcher import LaunchError, check_repository

F32 = RepositorySettings(precision="f32")  # the tiny engine is an ONNX file; the CPU default (int8) is an IR


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine") / "isnet-tiny.onnx"
    export_variant("isnet-tiny", "synthetic", path, (64, 64))
    return path


def test_settings_reach_the_generated_configs(tmp_path, tiny_engine):
    settings = RepositorySettings(precision="f32", max_batch=8, pre_instances=3, post_instances=5,
                                  engine_instances=2, threads=7, cpu_engine="onnxruntime",
                                  limits=Limits(max_side=4096))
    write_repository(tmp_path, family("isnet").spec(64), tiny_engine, settings)
    pre = (tmp_path / "preprocess_isnet" / "config.pbtxt").read_text()
    post = (tmp_path / "postprocess_isnet" / "config.pbtxt").read_text()
    engine = (tmp_path / "isnet" / "config.pbtxt").read_text()
    ensemble = (tmp_path / "rmbg_isnet" / "config.pbtxt").read_text()
    assert "max_batch_size: 8" in pre and "count: 3" in pre and "count: 5" in post and "count: 2" in engine
    assert '"max_side": 4096' in pre.replace('\\"', '"')
    assert 'key: "threads" value: { string_value: "7" }' in engine
    assert 'key: "engine" value: { string_value: "onnxruntime" }' in engine
    assert 'key: "engine_file" value: { string_value: "model.onnx" }' in engine
    assert 'platform: "ensemble"' in ensemble and 'model_name: "postprocess_isnet"' in ensemble
    assert (tmp_path / "isnet" / "1" / "model.onnx").stat().st_ino == tiny_engine.stat().st_ino  # hard link
    check_repository(tmp_path)  # complete: the launcher accepts it


def test_bad_settings_name_the_flag():
    with pytest.raises(ValueError, match="--precision fp16 is not offered for --target cpu"):
        RepositorySettings(target="cpu", precision="fp16")
    with pytest.raises(ValueError, match="pre-instances must be >= 1"):
        RepositorySettings(pre_instances=0)
    with pytest.raises(ValueError, match="unknown target"):
        RepositorySettings(target="tpu")


def test_tensor_pbtxt():
    assert Tensor("PIXELS", "UINT8", (-1, -1, -1), ragged=True).pbtxt() == (
        '{ name: "PIXELS" data_type: TYPE_UINT8 dims: [ -1, -1, -1 ] allow_ragged_batch: true }')


def test_provenance_is_stamped_and_checked(tmp_path, tiny_engine):
    meta = metadata.read(tiny_engine)
    assert meta["rmbg.source"] == "synthetic" and "MEANINGLESS" in meta["rmbg.licence"]
    assert json.loads(meta["rmbg.spec"])["height"] == 64
    with pytest.raises(ValueError, match="was made for"):
        write_repository(tmp_path, family("isnet").spec(128), tiny_engine, F32)
    bare = tmp_path / "bare.onnx"
    model = onnx.load(str(tiny_engine))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    with pytest.raises(ValueError, match="no provenance metadata"):
        write_repository(tmp_path / "r", family("isnet").spec(64), bare, F32)


def test_launcher_refuses_a_repository_without_its_engine_file(tmp_path, tiny_engine):
    write_repository(tmp_path, family("isnet").spec(64), tiny_engine, F32)
    (tmp_path / "isnet" / "1" / "model.onnx").unlink()
    with pytest.raises(LaunchError, match=r"isnet lacks .*model\.onnx.*rmbg build-repo --model isnet"):
        check_repository(tmp_path)


def test_gpu_torch_configs_carry_uint8_pixels_and_the_engine_settings(tmp_path):
    from safetensors.torch import save_file

    from rmbg_export.models import create_model

    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("birefnet-tiny").state_dict().items()}, str(weights))
    settings = RepositorySettings(target="gpu-torch", precision="bf16", max_batch=16, engine_instances=2,
                                  graphs="compile")
    spec = family("birefnet").spec(64)
    written = write_repository(tmp_path / "repo", spec, weights, settings, variant="birefnet-tiny")
    repo = tmp_path / "repo"
    engine = (repo / "birefnet" / "config.pbtxt").read_text()
    pre = (repo / "preprocess_birefnet" / "config.pbtxt").read_text()
    post = (repo / "postprocess_birefnet" / "config.pbtxt").read_text()
    assert 'backend: "python"' in engine and "kind: KIND_GPU count: 2" in engine and "max_batch_size: 16" in engine
    assert '{ name: "input" data_type: TYPE_UINT8 dims: [ 3, 64, 64 ] }' in engine
    assert '{ name: "input" data_type: TYPE_UINT8 dims: [ 3, 64, 64 ] }' in pre
    assert 'key: "model_input" value: { string_value: "uint8" }' in pre
    assert '{ name: "mask" data_type: TYPE_FP32 dims: [ 1, 64, 64 ] }' in post
    for key, value in (("variant", "birefnet-tiny"), ("precision", "bf16"), ("graphs", "compile"),
                       ("device", "cuda"), ("max_batch", "16"), ("engine_file", "model.safetensors")):
        assert f'key: "{key}" value: {{ string_value: "{value}" }}' in engine
    assert (repo / "birefnet" / "1" / "model.py").read_text().startswith('"""Triton adapter: our PyTorch')
    assert repo / "birefnet" / "1" / "model.safetensors" in written
    check_repository(repo)


def test_gpu_torch_on_the_cpu_runs_eager_on_cpu_instances(tmp_path):
    settings = RepositorySettings(target="gpu-torch", precision="f32", device="cpu")
    config = engine_config(family("isnet").spec(64), settings, variant="isnet-tiny").pbtxt()
    assert "kind: KIND_CPU" in config and 'key: "graphs" value: { string_value: "none" }' in config
    with pytest.raises(ValueError, match="needs the variant"):
        engine_config(family("isnet").spec(64), settings)
    with pytest.raises(ValueError, match="--precision int8 is not offered for --target gpu-torch"):
        RepositorySettings(target="gpu-torch", precision="int8")
    with pytest.raises(ValueError, match="--graphs must be one of cuda-graphs, compile, none"):
        RepositorySettings(target="gpu-torch", precision="fp16", graphs="tensorrt")
