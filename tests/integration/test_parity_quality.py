"""Served masks vs a direct run of the same engine, and quality against the eval set's ground truth.

The served IS-Net is the CPU default, the int8 OpenVINO IR. The direct pipeline below is
written independently of the served code (mask resize through PyTorch's F.interpolate as
RMBG-1.4 does, not our OpenCV path) so the parity figure checks the served path: decode,
batching, hand-offs, mask resize and encoding. Its input resize is RMBG-1.4's float
F.interpolate for the f32 reference; for the int8 parity it is OpenCV's uint8 bilinear, the
served input exactly: int8 layers turn the half-a-grey-level differences between the two
resizes into several grey levels of mask on low-contrast photos (4/255 on ecssd_0033), which
is a property of int8, not of the serving path (the f32 served path is held to 1/255 against
F.interpolate by test_birefnet_served.py, and to_model_input is checked against it in
tests/python_backend/test_pixels.py). Quality is measured on all 31
pairs (the int8 calibration photos come from scikit-image, never from the eval set) and held
to the absolute bounds and to the f32 model's own figures (+0.002 MAE, -0.005 IoU@0.5), the
f32 figures coming from the same direct recipe on the f32 ONNX that int8 was quantised from.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import cv2
import numpy as np
import onnxruntime as ort
import openvino as ov
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from rmbg_backend.engines import quantization_info
from rmbg_client import RmbgClient
from tests.conftest import mask_quality

pytestmark = pytest.mark.triton
MAE_BOUND, IOU_BOUND = 0.036, 0.89  # the README's quality bounds, absolute
MAE_SLACK, IOU_SLACK = 0.002, 0.005  # int8 against f32


def direct_mask(path, run: Callable[[np.ndarray], np.ndarray], uint8_resize: bool = False) -> np.ndarray:
    """RMBG-1.4's published recipe, float32 end to end; returns the mask in 0..1."""
    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = im.size
    if uint8_resize:
        resized = cv2.resize(np.asarray(im), (1024, 1024), interpolation=cv2.INTER_LINEAR)
        t = torch.from_numpy(resized).permute(2, 0, 1)[None].float() / 255.0 - 0.5
    else:
        t = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(1024, 1024), mode="bilinear", align_corners=False) / 255.0 - 0.5
    out = torch.from_numpy(run(t.numpy()))
    out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    return ((out - out.min()) / (out.max() - out.min())).numpy()


def mean_quality(masks: dict[str, np.ndarray], pairs) -> tuple[float, float]:
    figures = [mask_quality(masks[p.id], p.mask) for p in pairs]
    return float(np.mean([f[0] for f in figures])), float(np.mean([f[1] for f in figures]))


@pytest.fixture(scope="session")
def served_masks(triton, pairs) -> dict[str, np.ndarray]:
    client = RmbgClient(triton.grpc_url)
    items = [(p.id, p.image.read_bytes()) for p in pairs]
    masks = {}
    for key, result in client.remove_many(items, {"returnOnlyMask": True}, concurrency=2):
        assert not isinstance(result, Exception), (key, result)
        im = Image.open(io.BytesIO(result.data))
        assert im.mode == "L"
        masks[key] = np.asarray(im).astype(np.float32) / 255.0
    return masks


@pytest.fixture(scope="session")
def served_ir(model_repository):
    path = model_repository / "isnet" / "1" / "model.xml"
    assert path.is_file(), "the CPU default should be the int8 IR"
    return ov.Core().read_model(str(path))


def test_served_int8_masks_equal_the_same_ir_run_directly(served_masks, served_ir, pairs, record_property):
    # f32 for the layers left in float, as the served engine does: OpenVINO's own default on a
    # CPU with AVX512-BF16 is bf16, which alone moves these masks by up to 0.5 on some pixels.
    compiled = ov.Core().compile_model(served_ir, "CPU", {"INFERENCE_NUM_THREADS": 2,
                                                           "INFERENCE_PRECISION_HINT": "f32"})
    diffs = {}
    for p in pairs:
        direct = direct_mask(p.image, lambda x: compiled(x)[compiled.output(0)], uint8_resize=True)
        assert direct.shape == served_masks[p.id].shape
        diffs[p.id] = float(np.abs(direct - served_masks[p.id]).mean())
    record_property("parity", json.dumps(diffs))
    worst = max(diffs, key=diffs.get)
    print(f"\nparity: mean |served - direct| worst {worst} {diffs[worst] * 255:.3f}/255, "
          f"average {np.mean(list(diffs.values())) * 255:.3f}/255")
    assert diffs[worst] <= 1.0 / 255, (worst, diffs[worst])


def test_served_int8_quality_on_eval_set_within_the_f32_bounds(served_masks, served_ir, pairs, record_property):
    from rmbg_backend.families import family
    from rmbg_export.builders import servable_onnx
    from rmbg_export.cache import file_digest
    from rmbg_export.sources import resolve

    fam = family("isnet")
    f32_onnx = servable_onnx(fam, resolve("imgly-isnet"), fam.spec())  # cached by the build
    calibration = quantization_info(served_ir)
    assert calibration["source_onnx_sha256"] == file_digest(f32_onnx)  # quantised from this very file
    assert not {i["name"] for i in calibration["calibration_images"]} & {p.image.name for p in pairs}

    session = ort.InferenceSession(str(f32_onnx), providers=["CPUExecutionProvider"])
    f32_masks = {p.id: direct_mask(p.image, lambda x: session.run(None, {"input": x})[0]) for p in pairs}
    f32_mae, f32_iou = mean_quality(f32_masks, pairs)
    mae, iou = mean_quality(served_masks, pairs)
    record_property("quality", json.dumps({"int8_served": {"mae": mae, "iou": iou},
                                           "f32_direct": {"mae": f32_mae, "iou": f32_iou}}))
    print(f"\nquality over {len(pairs)} pairs: served int8 MAE {mae:.4f}, IoU@0.5 {iou:.4f}; "
          f"f32 MAE {f32_mae:.4f}, IoU@0.5 {f32_iou:.4f} (rembg with these weights: 0.0344 / 0.898)")
    assert f32_mae <= MAE_BOUND and f32_iou >= IOU_BOUND
    assert mae <= MAE_BOUND and iou >= IOU_BOUND
    assert mae <= f32_mae + MAE_SLACK and iou >= f32_iou - IOU_SLACK
