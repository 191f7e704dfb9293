"""Served masks vs a direct onnxruntime run, and quality against the eval set's ground truth.

The direct pipeline below is written independently of the served code (float resize through
PyTorch's F.interpolate as RMBG-1.4 does, not our OpenCV path) so the parity figure checks
the whole served path: decode, resize, batching, hand-offs, mask resize and encoding.
"""

from __future__ import annotations

import io
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from rmbg_client import RmbgClient

pytestmark = pytest.mark.triton


def direct_mask(path, session) -> np.ndarray:
    """RMBG-1.4's published recipe, float32 end to end; returns the mask in 0..1."""
    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = im.size
    t = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(1024, 1024), mode="bilinear", align_corners=False) / 255.0 - 0.5
    out = torch.from_numpy(session.run(None, {"input": t.numpy()})[0])
    out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    return ((out - out.min()) / (out.max() - out.min())).numpy()


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


def test_served_masks_equal_direct_onnxruntime(served_masks, pairs, model_repository, record_property):
    session = ort.InferenceSession(str(model_repository / "isnet" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    diffs = {}
    for p in pairs:
        direct = direct_mask(p.image, session)
        assert direct.shape == served_masks[p.id].shape
        diffs[p.id] = float(np.abs(direct - served_masks[p.id]).mean())
    record_property("parity", json.dumps(diffs))
    worst = max(diffs, key=diffs.get)
    print(f"\nparity: mean |served - direct| worst {worst} {diffs[worst] * 255:.3f}/255, "
          f"average {np.mean(list(diffs.values())) * 255:.3f}/255")
    assert diffs[worst] <= 1.0 / 255, (worst, diffs[worst])


def test_quality_on_eval_set(served_masks, pairs, record_property):
    maes, ious = [], []
    for p in pairs:
        gt = np.asarray(Image.open(p.mask).convert("L")).astype(np.float32) / 255.0
        pred = served_masks[p.id]
        maes.append(float(np.abs(pred - gt).mean()))
        a, b = pred >= 0.5, gt > 128 / 255.0
        union = np.logical_or(a, b).sum()
        ious.append(float(np.logical_and(a, b).sum() / union) if union else 1.0)
    mae, iou = float(np.mean(maes)), float(np.mean(ious))
    record_property("quality", json.dumps({"mae": mae, "iou": iou}))
    print(f"\nquality over {len(pairs)} pairs: mean MAE {mae:.4f}, mean IoU@0.5 {iou:.4f} "
          "(rembg with these weights: 0.0344 / 0.898)")
    assert mae <= 0.036 and iou >= 0.89
