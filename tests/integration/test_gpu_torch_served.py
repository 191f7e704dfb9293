"""The gpu-torch target through the real Triton server, with torch on the CPU (tiny variants).

``rmbg build-repo --target gpu-torch --device cpu`` writes the same repository a GPU
deployment gets but for the instance kind, so this covers everything but CUDA itself: the
uint8 ``input`` through the ensemble, the Python stub importing torch from the venv, the
state_dict file, the config's variant/precision parameters, dynamic batching across requests.
Served masks must equal the engine run directly on the same pixels (the engine's own
numerics against the PyTorch model are checked in tests/python_backend/test_torch_engine.py).
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from rmbg_backend.decode import decode_image
from rmbg_backend.families import family
from rmbg_backend.mask import mask_to_alpha
from rmbg_backend.resize import to_model_pixels
from rmbg_backend.torch_engine import TorchEngine, TorchSettings
from rmbg_client import RmbgClient
from rmbg_server.launcher import ServerConfig, TritonServer

pytestmark = pytest.mark.triton
SIZE = 64
# (family, variant, precision): IS-Net in float32, BiRefNet in bfloat16 (LayerNorm/softmax in float32)
DEPLOYED = (("isnet", "isnet-tiny", "f32"), ("birefnet", "birefnet-tiny", "bf16"))


@pytest.fixture(scope="module")
def torch_repository(tmp_path_factory):
    from rmbg_export.repository import RepositorySettings, build_repo

    repo = tmp_path_factory.mktemp("gpu_torch_repository")
    for model, variant, precision in DEPLOYED:
        settings = RepositorySettings(target="gpu-torch", precision=precision, device="cpu", max_batch=16)
        build_repo(model, "synthetic", settings, repo, size=SIZE, variant=variant)
    return repo


@pytest.fixture(scope="module")
def torch_server(torch_repository, tmp_path_factory):
    server = TritonServer(ServerConfig.on_free_ports(torch_repository),
                          log_file=tmp_path_factory.mktemp("logs") / "triton.log")
    server.start(timeout=300)
    yield server
    server.stop()


def direct_alpha(engine: TorchEngine, model: str, data: bytes) -> np.ndarray:
    spec = family(model).spec(SIZE)
    image = decode_image(data)
    mask = engine.run(to_model_pixels(image.rgb, spec)[None])[0]
    return mask_to_alpha(mask, image.height, image.width, spec.mask_normalization)


@pytest.mark.parametrize(("model", "variant", "precision"), DEPLOYED)
def test_served_masks_equal_the_engine_run_directly(torch_server, torch_repository, pairs, model, variant,
                                                    precision):
    photos = [p for p in pairs if p.id.startswith("ecssd")][:4]
    client = RmbgClient(torch_server.grpc_url, model=model)
    items = [(p.id, p.image.read_bytes()) for p in photos]
    served = dict(client.remove_many(items, {"returnOnlyMask": True}, concurrency=4))  # batched together
    engine = TorchEngine(torch_repository / model / "1" / "model.safetensors", family(model).spec(SIZE),
                         TorchSettings(variant, precision, device="cpu"))
    for key, data in items:
        result = served[key]
        assert not isinstance(result, Exception), result
        assert result.info["model"] == model
        alpha = np.asarray(Image.open(io.BytesIO(result.data)))
        direct = direct_alpha(engine, model, data)
        assert alpha.shape == direct.shape
        diff = np.abs(alpha.astype(np.int16) - direct.astype(np.int16))
        assert diff.mean() <= 1.0 and diff.max() <= 2, (key, diff.mean(), diff.max())


def test_the_engine_sees_uint8_pixels_and_the_stub_imported_torch(torch_server, torch_repository):
    from tritonclient.grpc import model_config_pb2 as mc

    from rmbg_export.configs import parse

    config = parse((torch_repository / "isnet" / "config.pbtxt").read_text())
    assert config.input[0].name == "input" and config.input[0].data_type == mc.TYPE_UINT8
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    log = torch_server.log_file.read_text(errors="replace")
    loads = re.findall(r"gpu-torch (\S+) (\S+) on cpu \(none\) loaded in ([0-9.]+) s", log)
    assert sorted((v, p) for v, p, _ in loads) == [("birefnet-tiny", "bf16"), ("isnet-tiny", "f32")]
    print("\ngpu-torch model load (torch import + weights) in the stub: "
          + ", ".join(f"{v} {s} s" for v, _, s in loads))


def test_a_bad_image_fails_alone(torch_server, small_jpeg):
    client = RmbgClient(torch_server.grpc_url, model="isnet")
    results = dict(client.remove_many([("bad", b"not an image"), ("good", small_jpeg)], concurrency=2))
    assert isinstance(results["bad"], Exception) and "IMAGE" in str(results["bad"])
    assert not isinstance(results["good"], Exception)


@pytest.fixture(scope="module")
def real_torch_repository(tmp_path_factory):
    """The real IS-Net weights on gpu-torch at 256 px: the synthetic ones find a "subject" that
    fills every photo, so highQuality would never need its second pass."""
    from rmbg_export.repository import RepositorySettings, build_repo

    repo = tmp_path_factory.mktemp("gpu_torch_real")
    build_repo("isnet", "imgly-isnet", RepositorySettings(target="gpu-torch", precision="f32", device="cpu"),
               repo, size=256)
    return repo


def test_high_quality_second_pass_sends_uint8_pixels(real_torch_repository, pairs, tmp_path):
    """highQuality's second pass (BLS from postprocess) feeds the uint8 engine its own input kind;
    the served mask is the library's, run on the same engine."""
    from rmbg_backend.high_quality import high_quality_alpha

    spec = family("isnet").spec(256)
    engine = TorchEngine(real_torch_repository / "isnet" / "1" / "model.safetensors", spec,
                         TorchSettings("isnet", "f32", device="cpu"))
    with TritonServer(ServerConfig.on_free_ports(real_torch_repository), log_file=tmp_path / "triton.log") as server:
        client = RmbgClient(server.grpc_url)
        for p in (p for p in pairs if p.id in ("ecssd_0049", "ecssd_0151")):  # subjects narrower than the photo
            result = client.remove(p.image.read_bytes(), {"returnOnlyMask": True, "highQuality": True})
            assert result.info["timings"]["second_pass_ms"] > 0, p.id
            image = decode_image(p.image.read_bytes())
            first = engine.run(to_model_pixels(image.rgb, spec)[None])[0]
            direct, _ = high_quality_alpha(first, image.rgb, spec, engine.run, "uint8")
            diff = np.abs(np.asarray(Image.open(io.BytesIO(result.data))).astype(np.int16) - direct)
            assert diff.mean() <= 1.0, (p.id, diff.mean())
