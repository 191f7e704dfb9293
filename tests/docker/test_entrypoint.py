"""docker/entrypoint.sh: builds the repository once per key, serves only a finished one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmbg_export import configs
from tests.conftest import ROOT

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A real (tiny) servable graph made by `rmbg export`: input [N,3,64,64] -> mask, with provenance."""
    from rmbg_export.export import export_variant

    path = tmp_path_factory.mktemp("weights") / "tiny.onnx"
    export_variant("birefnet-tiny", "synthetic", path, (64, 64))
    return path


def run(step: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ENTRYPOINT), step], env=env, capture_output=True, text=True, timeout=300)


def test_prepare_builds_once_per_key_and_serve_refuses_an_unfinished_repository(tmp_path, weights):
    models = tmp_path / "models"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               RMBG_MODEL="birefnet", RMBG_WEIGHTS=str(weights), RMBG_TARGET="cpu", RMBG_SIZE="64",
               RMBG_MODELS_DIR=str(models), RMBG_CACHE_DIR=str(tmp_path / "cache"), RMBG_IMAGE_VERSION="img-1")

    first = run("prepare", env)
    assert first.returncode == 0, first.stderr
    (repo,) = [p for p in models.iterdir() if p.is_dir()]
    assert repo.name.startswith("cpu-cpu-img-1-")
    assert (repo / ".complete").is_file() and (repo / "rmbg_birefnet" / "config.pbtxt").is_file()
    engine = configs.parse((repo / "birefnet" / "config.pbtxt").read_text())
    assert list(engine.input[0].dims) == [3, 64, 64]
    built = (repo / "birefnet" / "config.pbtxt").stat().st_mtime_ns

    again = run("prepare", env)
    assert again.returncode == 0 and "is ready" in again.stdout
    assert (repo / "birefnet" / "config.pbtxt").stat().st_mtime_ns == built  # reused, not rebuilt

    newer = run("prepare", dict(env, RMBG_IMAGE_VERSION="img-2"))  # a new image builds its own
    assert newer.returncode == 0, newer.stderr
    assert sorted(p.name.split("-")[3] for p in models.iterdir() if p.is_dir()) == ["1", "2"]

    (repo / ".complete").unlink()  # as if the build had been killed half-way
    refused = run("serve", env)
    assert refused.returncode == 1 and "no finished model repository" in refused.stderr


def test_unknown_step_is_a_usage_error(tmp_path, weights):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               RMBG_MODEL="birefnet", RMBG_WEIGHTS=str(weights), RMBG_TARGET="cpu",
               RMBG_MODELS_DIR=str(tmp_path), RMBG_IMAGE_VERSION="x")
    out = run("deploy", env)
    assert out.returncode == 2 and "usage" in out.stderr
