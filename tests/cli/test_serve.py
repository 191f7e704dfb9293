"""``rmbg serve`` as a real process: however it ends, tritonserver and its stubs end with it, and ports
another server holds are refused before anything starts (README, "Limits and security")."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from rmbg_server.launcher import free_ports, port_in_use
from tests.harness.cluster import rmbg_command
from tests.harness.processes import (
    alive,
    children,
    cmdline,
    descendants,
    group_members,
    mentioning,
    wait_for,
    wait_gone,
)

pytestmark = pytest.mark.triton


@pytest.fixture
def repository(tmp_path_factory) -> Path:
    """A tiny repository of this test's own: any process naming its path was started by this test."""
    from rmbg_export.repository import build_repo

    repo = tmp_path_factory.mktemp("serve_repository")
    build_repo("isnet", "synthetic", out=repo, size=256, variant="isnet-tiny")
    return repo


# Two test models beside the tiny IS-Net. "straggler" leaves a process in the server's process group that
# ignores SIGTERM and SIGINT, as a stub stopped in its first moments does (measured: such stubs outlived
# their server and ignored SIGTERM); "slow_init" takes seconds to initialise, as a large engine does, so
# the server can be stopped mid-start-up at a moment of the test's choosing.
EMPTY_MODEL_CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 0
input [{{ name: "X", data_type: TYPE_FP32, dims: [1] }}]
output [{{ name: "Y", data_type: TYPE_FP32, dims: [1] }}]
instance_group [{{ kind: KIND_CPU, count: 1 }}]
"""
MODELS = {
    "straggler": """import subprocess


class TritonPythonModel:
    def initialize(self, args):
        subprocess.Popen(["/bin/sh", "-c", "trap '' TERM INT HUP; while :; do sleep 1; done", "straggler",
                          args["model_repository"]])

    def execute(self, requests):
        return []
""",
    "slow_init": """import time


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(30)

    def execute(self, requests):
        return []
""",
}


def add_model(repository: Path, name: str) -> Path:
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(EMPTY_MODEL_CONFIG.format(name=name))
    (repository / name / "1" / "model.py").write_text(MODELS[name])
    return repository / name


def serve(repository: Path, tmp_path: Path, ports: list[int]) -> subprocess.Popen:
    cmd = [*rmbg_command(), "serve", "--model-repository", str(repository), "--http-port", str(ports[0]),
           "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]), "--log-file", str(tmp_path / "triton.log")]
    with open(tmp_path / "serve.out", "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def tritonserver_of(pid: int) -> int | None:
    return next((c for c in children(pid) if cmdline(c)[:1] and cmdline(c)[0].endswith("tritonserver")), None)


@pytest.mark.parametrize("when", ["ready", "loading"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill -9", "Ctrl-C"])
def test_nothing_outlives_rmbg_serve(repository, tmp_path, when, sig):
    """Before: kill -9 of `rmbg serve` left tritonserver serving on its ports, and any stop left behind the
    processes of the server's group that ignore SIGTERM (the issue's stubs; here the straggler model's)."""
    add_model(repository, "straggler")
    slow = add_model(repository, "slow_init") / "1" / "model.py" if when == "loading" else None
    ports = free_ports(3)
    process = serve(repository, tmp_path, ports)
    try:
        wait_for(process.pid, lambda: tritonserver_of(process.pid) is not None, 60, "tritonserver")
        triton = tritonserver_of(process.pid)
        assert triton is not None
        if slow is None:
            wait_for(process.pid, lambda: b"Ctrl-C to stop" in (tmp_path / "serve.out").read_bytes(), 120, "ready")
        else:  # the slow model's stub is initialising: the server is mid-start-up
            wait_for(process.pid, lambda: any(str(slow) in cmdline(c) for c in children(triton)), 60, "its stub")
        wait_for(process.pid, lambda: any("straggler" in cmdline(p) for p in group_members(triton)), 60,
                 "the straggler")
        started = descendants(process.pid) | group_members(triton)
        assert len(started) >= 3, started  # tritonserver, a stub, the straggler
        os.kill(process.pid, sig)
        process.wait(60)
        left = wait_gone(started, timeout=25)
        assert not left, f"still running after rmbg serve ended: {[cmdline(p)[:2] for p in left]}"
        assert not mentioning(str(repository)), "a process of this server outlived it"
        assert not any(port_in_use("127.0.0.1", port) for port in ports), "a port is still held"
    finally:
        if alive(process.pid):
            process.kill()
        process.wait(30)
        for pid in mentioning(str(repository)):  # never leave a failed run's processes to the next test
            os.kill(pid, signal.SIGKILL)


def test_a_busy_port_is_one_error_naming_it_and_nothing_starts(repository, tmp_path):
    """Before: tritonserver started, failed to bind and exited; the message named no port."""
    ports = free_ports(3)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports[1]))
        holder.listen()
        result = subprocess.run([*rmbg_command(), "serve", "--model-repository", str(repository),
                                 "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port",
                                 str(ports[2]), "--log-file", str(tmp_path / "triton.log")],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result
    assert f"port {ports[1]} on 127.0.0.1 (--grpc-port) already in use" in result.stderr, result.stderr
    assert f"{ports[0]} on" not in result.stderr  # only the busy one is named
    assert not (tmp_path / "triton.log").exists(), "tritonserver was started"
    assert not mentioning(str(repository))
