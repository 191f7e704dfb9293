"""The launcher's decisions, without starting a server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rmbg_server.launcher import (
    LaunchError,
    ServerConfig,
    TritonInstall,
    TritonServer,
    check_libpython,
    check_ports_free,
    free_port,
    free_ports,
    port_in_use,
    server_command,
)


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


def test_free_ports_never_repeat_within_a_process():
    """A bind to port 0 hands a just-closed port back now and then (about 38 repeats in 1,000 here); a Triton
    given one port twice exits during start-up, and two servers configured together must not share one."""
    ports = [port for _ in range(300) for port in free_ports(3)] + [free_port() for _ in range(100)]
    assert len(set(ports)) == len(ports) == 1000
    assert not any(port_in_use("127.0.0.1", port) for port in ports[-10:])


def test_busy_ports_are_named_with_their_flags(tmp_path):
    cfg = ServerConfig.on_free_ports(tmp_path)
    gateway = free_port()
    with socket.socket() as a, socket.socket() as b:
        for s, port in ((a, cfg.grpc_port), (b, gateway)):
            s.bind(("127.0.0.1", port))
            s.listen()
        assert port_in_use("127.0.0.1", cfg.grpc_port) and not port_in_use("127.0.0.1", cfg.http_port)
        with pytest.raises(LaunchError) as info:
            check_ports_free([*cfg.ports(), ("127.0.0.1", gateway, "--port")])
    message = str(info.value)
    assert f"ports {cfg.grpc_port} on 127.0.0.1 (--grpc-port), {gateway} on 127.0.0.1 (--port) already in use" \
        in message
    assert "--http-port" not in message and "--metrics-port" not in message
    check_ports_free([*cfg.ports(), ("127.0.0.1", gateway, "--port")])  # released: all free again


def test_a_port_another_process_only_connected_from_is_free():
    """A client's connection (or one in TIME_WAIT after it) does not make a port busy: servers bind with
    SO_REUSEADDR, and so does the check."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            conn, _ = server.accept()
            local_port = client.getsockname()[1]
            conn.close()
        assert not port_in_use("127.0.0.1", local_port)
