"""``pip install '.[client]'`` alone gives a working ``rmbg remove``, and nothing heavy comes along.

A fresh virtual environment, the project's own pins, a real install from this checkout, then
the installed command against the session's real server.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest
from PIL import Image

from rmbg_server.launcher import free_ports
from tests.cli.test_remove_served import DRIVER
from tests.conftest import ROOT

pytestmark = [pytest.mark.triton, pytest.mark.slow]
HEAVY = ("torch", "onnxruntime", "openvino", "opencv-python-headless", "opencv-python", "scipy", "nvidia-pytriton")


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("client-venv")
    venv.EnvBuilder(with_pip=True).create(env)
    subprocess.run([env / "bin" / "python", "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt",
                    f"{ROOT}[client]"], check=True, timeout=600)
    return env


def test_client_install_has_no_heavy_dependencies(client_venv):
    listed = subprocess.run([client_venv / "bin" / "python", "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True, check=True).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    assert not installed & set(HEAVY), installed & set(HEAVY)
    assert "numpy" in installed and "tritonclient" in installed


def test_client_install_removes_a_background(client_venv, triton, small_jpeg, tmp_path):
    src = tmp_path / "in.jpg"
    src.write_bytes(small_jpeg)
    out = tmp_path / "out.png"
    proc = subprocess.run([client_venv / "bin" / "rmbg", "remove", str(src), "-o", str(out), "--url", triton.grpc_url],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == Image.open(src).size


def test_client_install_names_the_extra_for_server_commands(client_venv, tmp_path):
    proc = subprocess.run([client_venv / "bin" / "rmbg", "build-repo", "--model", "isnet", "--weights", "synthetic",
                           "--out", str(tmp_path / "repo")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "pip install 'rmbg-triton[export]'" in proc.stderr, proc.stderr
    assert sys.executable not in proc.stderr  # no traceback from our interpreter leaked in


def test_client_install_without_a_server_names_the_server_extra(client_venv, small_jpeg, tmp_path):
    """With nothing at the default address, `rmbg remove` would start a server: that needs the extra."""
    (tmp_path / "in.jpg").write_bytes(small_jpeg)
    proc = subprocess.run([client_venv / "bin" / "python", "-c", DRIVER, *map(str, free_ports(2)),
                           "remove", str(tmp_path / "in.jpg"), "-o", str(tmp_path / "out.png")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "starting a server for this run needs the 'server' extra: pip install 'rmbg-triton[server]'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out.png").exists()
