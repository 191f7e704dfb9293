"""rmbg_birefnet beside rmbg_isnet: same pre/post steps, ImageNet normalisation, sigmoid mask.

The test repository serves BiRefNet-lite with synthetic weights at 256x256, so the masks are
meaningless but the served path is checked exactly against a direct onnxruntime run.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rmbg_client import RmbgClient

pytestmark = pytest.mark.triton
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def test_birefnet_mask_equals_direct_onnxruntime(triton, model_repository, pairs):
    session = ort.InferenceSession(str(model_repository / "birefnet" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    client = RmbgClient(triton.grpc_url, model="birefnet")
    for p in [p for p in pairs if p.id.startswith("ecssd")][:3]:
        result = client.remove(p.image.read_bytes(), {"returnOnlyMask": True})
        assert result.info["model"] == "birefnet"
        served = np.asarray(Image.open(io.BytesIO(result.data))).astype(np.float32) / 255
        rgb = np.asarray(Image.open(p.image).convert("RGB"))
        t = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(256, 256), mode="bilinear", align_corners=False)[0].numpy() / 255.0
        x = ((t.transpose(1, 2, 0) - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
        pred = torch.from_numpy(session.run(None, {"input": x})[0])
        direct = F.interpolate(pred, size=rgb.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
        assert served.shape == direct.shape
        assert np.abs(served - direct).mean() <= 1 / 255, p.id


def test_cli_remove_with_birefnet(triton, small_jpeg, tmp_path):
    (tmp_path / "in.jpg").write_bytes(small_jpeg)
    proc = subprocess.run([sys.executable, "-m", "rmbg_cli.main", "remove", str(tmp_path / "in.jpg"), "-o",
                           str(tmp_path / "out.png"), "--model", "birefnet", "--url", triton.grpc_url],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "RGBA" and out.size == Image.open(io.BytesIO(small_jpeg)).size
