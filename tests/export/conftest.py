"""A tiny IS-Net engine (synthetic weights, 64 px), exported once for the repository and config tests."""

from __future__ import annotations

import pytest

from rmbg_export.export import export_variant


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine") / "isnet-tiny.onnx"
    export_variant("isnet-tiny", "synthetic", path, (64, 64))
    return path
