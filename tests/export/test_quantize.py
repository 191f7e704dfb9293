"""int8 post-training quantisation (NNCF -> OpenVINO IR) on a tiny IS-Net, and the engine that serves it.

The real IS-Net's int8 quality on ../shared/eval is checked through the served pipeline in
tests/integration/test_parity_quality.py; here a 64 px tiny variant keeps the full path fast.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from rmbg_backend.engines import make_engine
from rmbg_backend.families import family
from rmbg_export.quantize import (
    CALIBRATION_IMAGES,
    CalibrationConfig,
    QuantizationError,
    calibration_images,
    calibration_inputs,
    quantize_onnx,
)

SIZE = 64
SPEC = family("isnet").spec(SIZE)
NAMES = ("astronaut.png", "coffee.png", "camera.png", "rocket.jpg")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from rmbg_export.export import export_variant

    path = tmp_path_factory.mktemp("tiny") / "isnet-tiny.onnx"
    export_variant("isnet-tiny", "synthetic", path, (SIZE, SIZE))  # stamped with provenance
    return path


@pytest.fixture(scope="module")
def quantized(tiny_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "model.xml"
    info = quantize_onnx(tiny_onnx, SPEC, out, CalibrationConfig(names=NAMES, seed=7, crops_per_image=2))
    return out, info


def test_calibration_photos_are_the_bundled_scikit_image_files_with_their_digests():
    images = calibration_images()
    assert [i.name for i in images] == list(CALIBRATION_IMAGES) and len(images) == 16
    for image in images:
        assert image.path.parent.name == "data" and image.path.parent.parent.name == "skimage"
        assert image.sha256 == hashlib.sha256(image.path.read_bytes()).hexdigest()


def test_calibration_inputs_follow_the_seed_and_the_served_preprocessing():
    images = calibration_images(NAMES[:2])
    spec = SPEC
    a = list(calibration_inputs(images, spec, seed=1, crops_per_image=2))
    b = list(calibration_inputs(images, spec, seed=1, crops_per_image=2))
    c = list(calibration_inputs(images, spec, seed=2, crops_per_image=2))
    assert len(a) == 6 and all(x.shape == (1, 3, SIZE, SIZE) and x.dtype == np.float32 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # the full frames do not depend on the seed; the crops do
    assert np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])
    # IS-Net's recipe: x/255 - 0.5
    assert a[0].min() >= -0.5 and a[0].max() <= 0.5


def test_missing_calibration_photo_is_named():
    with pytest.raises(QuantizationError, match="no_such_photo.png"):
        calibration_images(["astronaut.png", "no_such_photo.png"])


def test_quantized_ir_records_its_calibration_and_serves_as_int8(quantized, tiny_onnx):
    xml, info = quantized
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    engine = make_engine(str(xml), "openvino", threads=1, precision="int8")
    recorded = engine.quantization
    assert recorded["seed"] == 7 and recorded["crops_per_image"] == 2
    assert recorded["calibration_size"] == len(NAMES) * 3 == info.calibration_size
    assert [i["name"] for i in recorded["calibration_images"]] == list(NAMES)
    digests = {i.name: i.sha256 for i in calibration_images(NAMES)}
    assert all(i["sha256"] == digests[i["name"]] for i in recorded["calibration_images"])
    assert recorded["source_onnx_sha256"] == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert recorded["nncf_version"] and recorded["openvino_version"]
    assert len(recorded["mean_abs_diff_vs_f32"]) == 4

    x = next(calibration_inputs(calibration_images(NAMES[:1]), SPEC, crops_per_image=0))
    x2 = np.concatenate([x, x[:, :, ::-1]])
    f32 = make_engine(str(tiny_onnx), "openvino", threads=1, precision="f32")
    out8, out32 = engine.run(x2), f32.run(x2)
    assert out8.shape == (2, 1, SIZE, SIZE) and np.isfinite(out8).all()
    assert 0.0 <= out8.min() and out8.max() <= 1.0
    assert np.abs(out8 - out32).mean() < 0.02
    assert not np.array_equal(out8, out32)  # it really runs quantised layers
    np.testing.assert_allclose(engine.run(x2[:1]), out8[:1], atol=1e-6)  # batch-consistent


def test_int8_repository_holds_the_ir_pair_and_refuses_mismatched_precisions(quantized, tiny_onnx, tmp_path):
    from rmbg_export import metadata
    from rmbg_export.configs import RepositorySettings, parse
    from rmbg_export.repository import write_repository
    from rmbg_server.launcher import LaunchError, check_repository

    xml, _ = quantized
    meta = metadata.read(xml)  # the ONNX provenance travels into the IR, precision updated
    assert meta["rmbg.source"] == "synthetic" and meta["rmbg.precision"] == "int8"
    assert json.loads(meta["rmbg.quantization"])["seed"] == 7
    assert RepositorySettings().precision == "int8"  # the CPU default
    write_repository(tmp_path / "r", SPEC, xml)
    engine = parse((tmp_path / "r" / "isnet" / "config.pbtxt").read_text()).parameters
    assert engine["engine_file"].string_value == "model.xml" and engine["precision"].string_value == "int8"
    version = tmp_path / "r" / "isnet" / "1"
    assert version.joinpath("model.bin").stat().st_ino == xml.with_suffix(".bin").stat().st_ino  # hard link
    check_repository(tmp_path / "r")
    version.joinpath("model.bin").unlink()
    with pytest.raises(LaunchError, match=r"model\.bin"):
        check_repository(tmp_path / "r")
    with pytest.raises(ValueError, match="needs model.xml"):
        write_repository(tmp_path / "a", SPEC, tiny_onnx)  # int8 asked, an f32 ONNX given
    with pytest.raises(ValueError, match="needs model.onnx"):
        write_repository(tmp_path / "b", SPEC, xml, RepositorySettings(precision="f32"))
    with pytest.raises(ValueError, match="was made for"):
        write_repository(tmp_path / "c", family("isnet").spec(128), xml)


def test_precision_must_match_the_file(quantized, tiny_onnx):
    xml, _ = quantized
    with pytest.raises(ValueError, match="is an int8 model"):
        make_engine(str(xml), "openvino", precision="f32")
    with pytest.raises(ValueError, match="not an int8 model.*--precision int8"):
        make_engine(str(tiny_onnx), "openvino", precision="int8")
    with pytest.raises(ValueError, match="onnxruntime CPU runs float32 only"):
        make_engine(str(tiny_onnx), "onnxruntime", precision="int8")
    assert make_engine(str(tiny_onnx), "openvino", precision="f32").quantization is None
