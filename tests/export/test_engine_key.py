"""rmbg_export.engine_key: a change of GPU, TensorRT, image or build settings never reuses a
repository; the gpu-ort repository keeps its engine cache inside itself, with a batch profile."""

from __future__ import annotations

import pytest

from rmbg_backend.families import family
from rmbg_export.configs import RepositorySettings, parse
from rmbg_export.engine_key import (
    BuildSettings,
    Gpu,
    check_builder_matches_runtime,
    decode_tensorrt_version,
    detect_gpus,
    engine_key,
    main,
    runtime_tensorrt_version,
    slug,
)
from rmbg_export.export import export_variant
from rmbg_export.repository import write_repository

H100 = [Gpu("NVIDIA H100 80GB HBM3", "9.0")]
TRT = BuildSettings("isnet", "imgly-isnet", "gpu-trt")


@pytest.mark.parametrize("value,version", [(100800, "10.8.0"), (101303, "10.13.3"), (110400, "11.4.0"),
                                           (8601, "8.6.1"), (8510, "8.5.10"), (7203, "7.2.3")])
def test_decode_tensorrt_version_both_encodings(value, version):
    assert decode_tensorrt_version(value) == version


def test_decode_rejects_nonsense():
    with pytest.raises(ValueError):
        decode_tensorrt_version(0)


def test_key_names_gpu_tensorrt_image_and_settings():
    key = engine_key(TRT, H100, "10.8.0", "0.1.0-triton25.01-trt10.8.0.43")
    assert key == f"gpu-trt-nvidia-h100-80gb-hbm3-sm90-trt10.8.0-0.1.0-triton25.01-trt10.8.0.43-{TRT.digest()}"
    assert slug(key) == key and "/" not in key


def test_every_ingredient_changes_the_key():
    base = engine_key(TRT, H100, "10.8.0", "img1")
    variants = [
        engine_key(TRT, [Gpu("NVIDIA A100-SXM4-80GB", "8.0")], "10.8.0", "img1"),
        engine_key(TRT, H100, "10.9.0", "img1"),
        engine_key(TRT, H100, "10.8.0", "img2"),
        engine_key(BuildSettings("isnet", "./other.onnx", "gpu-trt"), H100, "10.8.0", "img1"),
        engine_key(BuildSettings("isnet", "imgly-isnet", "gpu-trt", max_batch=8), H100, "10.8.0", "img1"),
        engine_key(BuildSettings("isnet", "imgly-isnet", "gpu-trt", size=512), H100, "10.8.0", "img1"),
        engine_key(BuildSettings("isnet", "imgly-isnet", "gpu-ort"), H100, "10.8.0", "img1"),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert engine_key(TRT, list(reversed(H100 * 2)), "10.8.0", "img1") == base  # same GPUs, any order


def test_cpu_key_ignores_the_device_and_gpu_key_needs_one():
    cpu = BuildSettings("isnet", "imgly-isnet", "cpu")
    assert engine_key(cpu, [], None, "img") == engine_key(cpu, H100, "10.8.0", "img")
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU"):
        engine_key(TRT, [], "10.8.0", "img")
    with pytest.raises(RuntimeError, match="needs TensorRT"):
        engine_key(TRT, H100, None, "img")


def test_builder_must_match_the_runtime_tensorrt():
    check_builder_matches_runtime("gpu-trt", "10.8.0", "10.8.0.43")
    check_builder_matches_runtime("gpu-ort", "10.8.0", None)  # onnxruntime builds with the runtime itself
    with pytest.raises(RuntimeError, match="would not load"):
        check_builder_matches_runtime("gpu-trt", "10.8.0", "10.9.0.34")
    with pytest.raises(RuntimeError, match="not installed"):
        check_builder_matches_runtime("gpu-trt", "10.8.0", None)


def test_probes_report_absence_on_a_machine_without_gpu_or_tensorrt():
    # This machine (and CI) has neither a CUDA driver nor libnvinfer; the NGC image has both.
    assert detect_gpus() == [] and runtime_tensorrt_version() is None


def test_cli_prints_the_cpu_key_and_refuses_gpu_without_a_gpu(capsys):
    assert main(["--model", "isnet", "--weights", "synthetic", "--target", "cpu", "--image-version", "v1"]) == 0
    digest = BuildSettings("isnet", "synthetic", "cpu").digest()
    assert capsys.readouterr().out.strip() == f"cpu-cpu-v1-{digest}"
    assert main(["--model", "isnet", "--weights", "synthetic", "--target", "gpu-ort", "--image-version", "v1"]) == 1
    assert "needs an NVIDIA GPU" in capsys.readouterr().err


def test_gpu_ort_engine_cache_lives_in_the_repository_with_a_batch_profile(tmp_path):
    engine = tmp_path / "m.onnx"
    export_variant("isnet-tiny", "synthetic", engine, (64, 64))
    write_repository(tmp_path / "repo", family("isnet").spec(64), engine, RepositorySettings("gpu-ort", "fp16", 8))
    config = parse((tmp_path / "repo" / "isnet" / "config.pbtxt").read_text())
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    cache = (tmp_path / "repo" / "isnet" / "trt_cache").resolve()
    assert cache.is_dir()
    for key, value in [("trt_engine_cache_path", str(cache)), ("trt_timing_cache_path", str(cache)),
                       ("trt_engine_cache_enable", "1"), ("trt_profile_min_shapes", "input:1x3x64x64"),
                       ("trt_profile_opt_shapes", "input:4x3x64x64"),
                       ("trt_profile_max_shapes", "input:8x3x64x64"), ("trt_layer_norm_fp32_fallback", "1")]:
        assert accelerator.parameters[key] == value
