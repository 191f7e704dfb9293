"""The repository writer: configs from Triton's protobuf schema, settings from flags, provenance checked."""

from __future__ import annotations

import json

import onnx
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from rmbg_backend.decode import Limits
from rmbg_backend.families import family
from rmbg_export import metadata
from rmbg_export.configs import RepositorySettings, parse
from rmbg_export.repository import write_repository
from rmbg_server.launcher import LaunchError, check_repository

F32 = RepositorySettings(precision="f32")  # the tiny engine is an ONNX file; the CPU default (int8) is an IR


def read_config(repo, model: str) -> mc.ModelConfig:
    return parse((repo / model / "config.pbtxt").read_text())


def params(config: mc.ModelConfig) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def tensors(items) -> list[tuple[str, str, list[int]]]:
    return [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in items]




def test_settings_reach_the_generated_configs(tmp_path, tiny_engine):
    settings = RepositorySettings(precision="f32", max_batch=8, pre_instances=3, post_instances=5,
                                  engine_instances=2, threads=7, cpu_engine="onnxruntime",
                                  limits=Limits(max_side=4096))
    write_repository(tmp_path, family("isnet").spec(64), tiny_engine, settings)
    pre, post, engine, ensemble = (read_config(tmp_path, m) for m in
                                   ("preprocess_isnet", "postprocess_isnet", "isnet", "rmbg_isnet"))
    assert pre.max_batch_size == 8 and pre.instance_group[0].count == 3
    assert post.instance_group[0].count == 5 and engine.instance_group[0].count == 2
    assert json.loads(pre.parameters["limits"].string_value)["max_side"] == 4096
    assert params(engine) == {"threads": "7", "engine": "onnxruntime", "engine_file": "model.onnx",
                              "precision": "f32"}
    assert ensemble.platform == "ensemble"
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["preprocess_isnet", "isnet",
                                                                          "postprocess_isnet"]
    assert (tmp_path / "isnet" / "1" / "model.onnx").stat().st_ino == tiny_engine.stat().st_ino  # hard link
    check_repository(tmp_path)  # complete: the launcher accepts it


def test_bad_settings_name_the_flag():
    with pytest.raises(ValueError, match="--precision fp16 is not offered for --target cpu"):
        RepositorySettings(target="cpu", precision="fp16")
    with pytest.raises(ValueError, match="pre-instances must be >= 1"):
        RepositorySettings(pre_instances=0)
    with pytest.raises(ValueError, match="unknown target"):
        RepositorySettings(target="tpu")


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

    from rmbg_models import create_model

    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("birefnet-tiny").state_dict().items()}, str(weights))
    settings = RepositorySettings(target="gpu-torch", precision="bf16", max_batch=16, engine_instances=2,
                                  graphs="compile")
    spec = family("birefnet").spec(64)
    written = write_repository(tmp_path / "repo", spec, weights, settings, variant="birefnet-tiny")
    repo = tmp_path / "repo"
    engine, pre, post = (read_config(repo, m) for m in ("birefnet", "preprocess_birefnet", "postprocess_birefnet"))
    assert engine.backend == "python" and engine.max_batch_size == 16
    assert (engine.instance_group[0].kind, engine.instance_group[0].count) == (mc.ModelInstanceGroup.KIND_GPU, 2)
    assert tensors(engine.input) == tensors(pre.output)[:1] == [("input", "TYPE_UINT8", [3, 64, 64])]
    assert params(pre)["model_input"] == "uint8"
    assert tensors(post.input)[0] == ("mask", "TYPE_FP32", [1, 64, 64])
    for key, value in (("variant", "birefnet-tiny"), ("precision", "bf16"), ("graphs", "compile"),
                       ("device", "cuda"), ("max_batch", "16"), ("engine_file", "model.safetensors")):
        assert params(engine)[key] == value
    assert (repo / "birefnet" / "1" / "model.py").read_text().startswith('"""Triton adapter: our PyTorch')
    assert repo / "birefnet" / "1" / "model.safetensors" in written
    check_repository(repo)
