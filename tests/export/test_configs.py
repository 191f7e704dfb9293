"""The Triton configs: Triton's own protobuf messages, every generated file parses back."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from rmbg_backend.families import family
from rmbg_export.configs import RepositorySettings, engine_config, parse, render, tensor
from rmbg_export.repository import write_repository
from tests.export.test_repository import F32, params


def test_tensor_is_triton_s_own_message():
    t = tensor("PIXELS", "UINT8", (-1, -1, -1), ragged=True)
    assert (t.name, list(t.dims), t.allow_ragged_batch, t.optional) == ("PIXELS", [-1, -1, -1], True, False)
    with pytest.raises(ValueError):  # a dtype Triton does not have is refused when the config is built
        tensor("X", "UINT7", (1,))


def test_every_generated_config_parses_back(tmp_path, tiny_engine):
    written = write_repository(tmp_path, family("isnet").spec(64), tiny_engine, F32)
    configs = [p for p in written if p.name == "config.pbtxt"]
    assert len(configs) == 4
    for path in configs:
        config = parse(path.read_text())
        assert config.name == path.parent.name
        assert render(config) == path.read_text()  # the file is exactly the rendered message


def test_gpu_torch_on_the_cpu_runs_eager_on_cpu_instances(tmp_path):
    settings = RepositorySettings(target="gpu-torch", precision="f32", device="cpu")
    config = engine_config(family("isnet").spec(64), settings, variant="isnet-tiny")
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU and params(config)["graphs"] == "none"
    with pytest.raises(ValueError, match="needs the variant"):
        engine_config(family("isnet").spec(64), settings)
    with pytest.raises(ValueError, match="--precision int8 is not offered for --target gpu-torch"):
        RepositorySettings(target="gpu-torch", precision="int8")
    with pytest.raises(ValueError, match="--graphs must be one of cuda-graphs, compile, none"):
        RepositorySettings(target="gpu-torch", precision="fp16", graphs="tensorrt")
