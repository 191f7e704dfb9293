"""``rmbg up``: Triton and the gateway from one command; a documented request works; SIGTERM stops both."""

from __future__ import annotations

import copy
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rmbg_server.launcher import free_ports, port_in_use
from tests.harness.processes import alive, as_another_user, cmdline, descendants, mentioning, wait_gone
from tests.server.gateway.conftest import hosted_examples, relocate

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def test_up_serves_the_hosted_examples_and_stops_triton(model_repository, tmp_path, http_server, small_jpeg):
    ports = free_ports(4)
    cmd = [str(Path(sys.executable).parent / "rmbg"), "up", "--model-repository", str(model_repository),
           "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
           "--port", str(ports[3]), "--data-dir", str(tmp_path / "data"), "--allow-fetch-from", "127.0.0.0/8"]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Ctrl-C to stop"):
                break
        out = "".join(lines)
        assert f"gateway: http://127.0.0.1:{ports[3]}" in out, out
        assert f"gRPC 127.0.0.1:{ports[1]}" in out and "rmbg_birefnet" in out and "rmbg_isnet" in out
        base = f"http://127.0.0.1:{ports[3]}"
        assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200
        example = copy.deepcopy(next(e for e in hosted_examples("002", '"image_url"') if "sync_mode" in e))
        example["image_url"] = relocate(example["image_url"], http_server.base)
        http_server.handler.files[example["image_url"].removeprefix(http_server.base)] = small_jpeg
        response = httpx.post(f"{base}/fal-ai/bria/background/remove", json=example, timeout=120)
        assert response.status_code == 200, response.text
        assert httpx.get(response.json()["image"]["url"], timeout=30).status_code == 200
        triton_pids = [int(p) for p in subprocess.run(["pgrep", "-f", f"tritonserver.*--grpc-port={ports[1]}"],
                                                      capture_output=True, text=True).stdout.split()]
        assert triton_pids, "no tritonserver started by rmbg up"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0
    for pid in triton_pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], \
            "Triton outlived rmbg up"
    assert (tmp_path / "data" / "triton.log").stat().st_size > 0
    assert os.path.exists(tmp_path / "data" / "jobs.sqlite3")


def _up(repository: Path, ports: list[int], data_dir: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "rmbg"), "up", "--model-repository", str(repository),
            "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
            "--port", str(ports[3]), "--data-dir", str(data_dir)]


@pytest.fixture
def own_repository(tmp_path_factory) -> Path:
    """A tiny repository of this test's own: any process naming its path was started by this test."""
    from rmbg_export.repository import build_repo

    repo = tmp_path_factory.mktemp("up_repository")
    build_repo("isnet", "synthetic", out=repo, size=256, variant="isnet-tiny")
    return repo


def test_a_second_up_on_busy_ports_starts_nothing_and_kill_9_ends_the_first(own_repository, tmp_path):
    """Before: the second one logged "healthy" and "ready" against the first one's Triton, exited 3 and left
    stubs that ignore SIGTERM; and kill -9 of an `rmbg up` left its Triton serving."""
    ports = free_ports(4)
    first = subprocess.Popen(_up(own_repository, ports, tmp_path / "first"), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines = iter(first.stdout.readline, "")  # until it is ready, or ends
        assert any(line.startswith("Ctrl-C to stop") for line in lines) and alive(first.pid)
        before = mentioning(str(own_repository))
        assert before, "the first rmbg up started no Triton"
        second = subprocess.run(_up(own_repository, ports, tmp_path / "second"), capture_output=True, text=True,
                                timeout=120)
        assert second.returncode in (1, 2), second
        assert second.stdout == "" and second.stderr.count("\n") == 1, second.stderr  # one line: the error
        for port, flag in zip(ports, ("--http-port", "--grpc-port", "--metrics-port", "--port"), strict=True):
            assert f"{port} on 127.0.0.1 ({flag})" in second.stderr, second.stderr
        assert not (tmp_path / "second" / "triton.log").exists(), "the second rmbg up started Triton"
        assert mentioning(str(own_repository)) == before, "the second rmbg up left processes behind"
        assert httpx.get(f"http://127.0.0.1:{ports[3]}/readyz", timeout=30).status_code == 200  # the first serves on
        started = descendants(first.pid) | before
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
        left = wait_gone(started, timeout=25)
        assert not left, f"still running after kill -9 of rmbg up: {[cmdline(p)[:2] for p in left]}"
        assert not any(port_in_use("127.0.0.1", port) for port in ports)
    finally:
        if first.poll() is None:
            first.kill()
        first.wait(30)
        for pid in mentioning(str(own_repository)):
            os.kill(pid, signal.SIGKILL)


def test_a_busy_gateway_port_is_refused_before_triton_starts(own_repository, tmp_path):
    ports = free_ports(4)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports[3]))
        holder.listen()
        result = subprocess.run(_up(own_repository, ports, tmp_path / "data"), capture_output=True, text=True,
                                timeout=120)
    assert result.returncode in (1, 2), result
    assert f"port {ports[3]} on 127.0.0.1 (--port) already in use" in result.stderr, result.stderr
    assert "--http-port" not in result.stderr
    assert not (tmp_path / "data" / "triton.log").exists(), "Triton was started"
    assert not mentioning(str(own_repository))


def test_an_api_key_given_as_a_flag_does_not_show(own_repository, tmp_path):
    """Before: `ps` showed `rmbg up ... --api-key KEY` to every local user."""
    key = secrets.token_hex(16)
    process = subprocess.Popen([*_up(own_repository, free_ports(4), tmp_path), "--api-key", key],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert any(line.startswith("Ctrl-C to stop") for line in iter(process.stdout.readline, ""))
        seen = as_another_user("cat", f"/proc/{process.pid}/cmdline")
        assert seen.returncode == 0 and key.encode() not in seen.stdout
        assert b"\0--api-key\0<hidden>\0" in seen.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
