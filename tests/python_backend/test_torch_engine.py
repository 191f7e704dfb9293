"""The gpu-torch engine on the CPU: tiny variants, small sizes, a real photo.

On the CPU neither CUDA graphs nor torch.compile apply, so these check what is common to
every device: on-device normalisation equal to the CPU path's, BN folding, channels_last,
reduced precision with LayerNorm/softmax kept in float32, batching and its limits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from rmbg_backend.families import family
from rmbg_backend.resize import to_model_input, to_model_pixels
from rmbg_backend.torch_engine import TorchEngine, TorchSettings, load_model
from rmbg_models import create_model
from rmbg_models.reference import synthetic_state_dict

SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """variant -> (reference model with BN, safetensors file of its weights)."""
    out = {}
    for variant in ("isnet-tiny", "birefnet-tiny"):
        model = create_model(variant)
        state = synthetic_state_dict(model)
        model.load_state_dict(state)
        path = tmp_path_factory.mktemp("weights") / f"{variant}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        out[variant] = (model, path)
    return out


@pytest.fixture(scope="module")
def rgb(small_jpeg) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(small_jpeg)).convert("RGB"))


def spec_for(variant: str, size: int = SIZE):
    return family(variant.split("-")[0]).spec(size)


@pytest.fixture(scope="module")
def f32_masks(tiny, rgb) -> dict[str, np.ndarray]:
    """variant -> the fp32 engine's mask of the photo."""
    out = {}
    for variant, (_, path) in tiny.items():
        spec = spec_for(variant)
        engine = TorchEngine(path, spec, TorchSettings(variant, "f32", device="cpu", max_batch=4))
        assert engine.graphs == "none"  # neither CUDA graphs nor compile on the CPU
        out[variant] = engine.run(to_model_pixels(rgb, spec)[None])
    return out


@pytest.mark.parametrize("variant", ["isnet-tiny", "birefnet-tiny"])
def test_fp32_engine_equals_the_model_on_the_cpu_paths_input(tiny, rgb, f32_masks, variant):
    model, _ = tiny[variant]
    spec = spec_for(variant)
    with torch.no_grad():
        expected = model.predict_mask(torch.from_numpy(to_model_input(rgb, spec)[None])).numpy()
    got = f32_masks[variant]
    assert got.dtype == np.float32 and got.shape == (1, 1, SIZE, SIZE)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)  # BN folding and channels_last: rounding only


def test_normalisation_on_the_device_is_the_cpu_paths_to_the_bit(tiny, rgb):
    spec = family("birefnet").spec(SIZE)  # ImageNet mean/std: every channel differs
    engine = TorchEngine(tiny["birefnet-tiny"][1], spec, TorchSettings("birefnet-tiny", "f32", device="cpu"))
    pixels = torch.from_numpy(to_model_pixels(rgb, spec)[None])
    x = pixels.float().mul_(engine.scale).sub_(engine.shift)
    assert torch.equal(x[0], torch.from_numpy(to_model_input(rgb, spec)))


def test_batches_are_split_at_max_batch_and_requests_stay_separate(tiny, rgb):
    _, path = tiny["isnet-tiny"]
    spec = family("isnet").spec(SIZE)
    engine = TorchEngine(path, spec, TorchSettings("isnet-tiny", "f32", device="cpu", max_batch=2))
    one = to_model_pixels(rgb, spec)[None]
    other = np.ascontiguousarray(one[:, :, ::-1])  # upside down: a different mask
    single = [engine.run(one), engine.run(other)]
    outs = engine.run_batch([one, other, one, other, one])  # 5 requests, chunks of 2, 2, 1
    assert [o.shape for o in outs] == [(1, 1, SIZE, SIZE)] * 5
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out, single[i % 2], rtol=0, atol=1e-6)
    assert np.abs(single[0] - single[1]).max() > 1e-3


@pytest.mark.parametrize(("variant", "precision", "bound"), [
    ("isnet-tiny", "bf16", 0.01), ("isnet-tiny", "fp16", 0.002),
    ("birefnet-tiny", "bf16", 0.01), ("birefnet-tiny", "fp16", 0.002),
])
def test_reduced_precision_keeps_layernorm_in_float32_and_stays_close(tiny, rgb, f32_masks, variant, precision,
                                                                       bound):
    _, path = tiny[variant]
    spec = spec_for(variant)
    pixels = to_model_pixels(rgb, spec)[None]
    reference = f32_masks[variant]
    engine = TorchEngine(path, spec, TorchSettings(variant, precision, device="cpu"))
    low = {torch.bfloat16, torch.float16}
    convs = [m for m in engine.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.dtype in low for m in convs)
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs if m.weight.dim() == 4)
    norms = [m for m in engine.model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(m.weight.dtype == torch.float32 for m in norms)
    assert bool(norms) == variant.startswith("birefnet")
    got = engine.run(pixels)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    assert float(np.abs(got - reference).mean()) <= bound


def test_load_model_folds_every_batchnorm(tiny):
    model = load_model("birefnet-tiny", tiny["birefnet-tiny"][1])
    assert not [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_wrong_input_is_refused_with_the_expected_shape(tiny):
    settings = TorchSettings("isnet-tiny", "f32", device="cpu")
    engine = TorchEngine(tiny["isnet-tiny"][1], family("isnet").spec(SIZE), settings)
    with pytest.raises(ValueError, match=r"uint8 N x 3 x 64 x 64, got float32 \(1, 3, 64, 64\)"):
        engine.run(np.zeros((1, 3, SIZE, SIZE), np.float32))
    with pytest.raises(ValueError, match=r"got uint8 \(1, 3, 32, 64\)"):
        engine.run(np.zeros((1, 3, 32, 64), np.uint8))
    with pytest.raises(ValueError, match="engine input must be uint8, got float32"):  # never truncated silently
        engine.run_batch([np.zeros((1, 3, SIZE, SIZE), np.float32)])


def test_settings_from_config_parameters():
    settings = TorchSettings.from_params({"variant": "isnet", "precision": "bf16", "graphs": "compile",
                                          "device": "cuda", "max_batch": "16", "spec": "{}"})
    assert settings == TorchSettings("isnet", "bf16", "compile", "cuda", 16)
    assert TorchSettings.from_params(settings.to_params()) == settings
    with pytest.raises(ValueError, match="precision must be one of fp16, bf16, f32, got 'f16'"):
        TorchSettings("isnet", "f16")
    with pytest.raises(ValueError, match="graphs must be one of cuda-graphs, compile, none"):
        TorchSettings("isnet", graphs="tensorrt")
    with pytest.raises(ValueError, match="needs a 'variant' parameter"):
        TorchSettings.from_params({"precision": "fp16"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu_says_how_to_run_on_the_cpu(tiny):
    with pytest.raises(RuntimeError, match="--device cpu"):
        TorchEngine(tiny["isnet-tiny"][1], family("isnet").spec(SIZE), TorchSettings("isnet-tiny", "fp16"))
