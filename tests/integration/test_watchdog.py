"""A dead Python-backend stub is noticed and its model reloaded (Triton alone would not)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from rmbg_client import RmbgClient
from rmbg_server.watchdog import stub_processes

pytestmark = pytest.mark.triton


@pytest.mark.parametrize("model", ["postprocess_isnet"])
def test_killed_stub_is_replaced_and_service_restored(triton, model_repository, small_jpeg, model, caplog):
    caplog.set_level("WARNING", logger="rmbg_server.watchdog")
    client = RmbgClient(triton.grpc_url)
    client.remove(small_jpeg)
    stubs = {pid: m for pid, m in stub_processes(triton.process.pid, model_repository).items() if m == model}
    assert stubs, f"no stub found for {model}"
    restarts = len(triton.watchdog.restarts)
    victim = next(iter(stubs))
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    while len(triton.watchdog.restarts) == restarts and time.monotonic() - t0 < 30:
        time.sleep(0.1)
    assert len(triton.watchdog.restarts) > restarts, "watchdog did not reload the model"
    assert time.monotonic() - t0 < 10
    assert client.remove(small_jpeg).info["model"] == "isnet"
    reloads = [r.getMessage() for r in caplog.records if "reloaded in" in r.getMessage()]
    # Reaped or still a zombie when the watchdog looked: either way the cause names the pid.
    assert any(model in m and f"stub pid {victim} " in m for m in reloads), caplog.text
