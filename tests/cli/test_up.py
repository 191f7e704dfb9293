"""``rmbg up``: Triton and the gateway from one command; a documented request works; SIGTERM stops both."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rmbg_server.launcher import free_port
from tests.server.gateway.conftest import hosted_examples, relocate

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def test_up_serves_the_hosted_examples_and_stops_triton(model_repository, tmp_path, http_server, small_jpeg):
    ports = [free_port() for _ in range(4)]
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
