"""The session's Triton server fixtures (``model_repository``, ``triton``) live in tests/conftest.py: the
gateway's tests share the same server. Here: a gRPC client and a real photo shared by the served tests."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rmbg_client import RmbgClient


def load(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.fixture(scope="module")
def client(triton):
    return RmbgClient(triton.grpc_url)


@pytest.fixture(scope="module")
def photo(pairs):
    """grabcut_teddy: a plush toy on a red carpet, 284 x 398."""
    return next(p for p in pairs if p.id == "grabcut_teddy").image.read_bytes()


@pytest.fixture(scope="module")
def mask_alpha(client, photo):
    return np.asarray(load(client.remove(photo, {"returnOnlyMask": True}).data))
