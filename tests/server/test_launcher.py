"""The launcher's decisions, without starting a server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rmbg_server.launcher import LaunchError, ServerConfig, TritonInstall, TritonServer, check_libpython, server_command


def test_command_binds_loopback_and_locks_admin_apis(tmp_path):
    cfg = ServerConfig(tmp_path, admin_key="k123")
    cmd = server_command(TritonInstall(Path("/x/tritonserver"), tmp_path / "backends"), cfg)
    assert "--http-address=127.0.0.1" in cmd and "--grpc-address=127.0.0.1" in cmd
    assert "--metrics-address=127.0.0.1" in cmd and "--model-control-mode=explicit" in cmd
    assert any(c.startswith("--http-restricted-api=model-repository,shared-memory") and c.endswith("admin-key=k123")
               for c in cmd)
    assert any(c.startswith("--grpc-restricted-protocol=model-repository") for c in cmd)
    assert f"--backend-directory={tmp_path / 'backends'}" in cmd


def test_each_start_gets_its_own_admin_key(tmp_path, monkeypatch):
    monkeypatch.delenv("RMBG_ADMIN_KEY", raising=False)
    a, b = ServerConfig(tmp_path), ServerConfig(tmp_path)
    assert a.admin_key != b.admin_key and len(a.admin_key) == 32


def test_empty_repository_is_refused(tmp_path):
    with pytest.raises(LaunchError, match="has no models; build one first"):
        TritonServer(ServerConfig(tmp_path))


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ldd") is None, reason="needs gcc and ldd")
def test_missing_libpython_names_the_package(tmp_path):
    """A real binary linked against a libpython that is then removed, as on a machine without it."""
    (tmp_path / "lib.c").write_text("int answer(void) { return 42; }\n")
    (tmp_path / "main.c").write_text("int answer(void);\nint main(void) { return answer(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libpython9.9.so.1.0", "-o",
                    str(tmp_path / "libpython9.9.so"), str(tmp_path / "lib.c")], check=True)
    subprocess.run(["gcc", "-o", str(tmp_path / "stub"), str(tmp_path / "main.c"), f"-L{tmp_path}", "-lpython9.9"],
                   check=True)
    (tmp_path / "libpython9.9.so").unlink()
    with pytest.raises(LaunchError) as info:
        check_libpython(tmp_path / "stub")
    tag = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert "libpython9.9.so.1.0 is missing" in str(info.value)
    assert f"apt-get install libpython{tag}" in str(info.value)
