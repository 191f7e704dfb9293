"""Kill the segmentation stub under load: only requests in flight (or sent before the watchdog
restored service) fail, and a client with retries loses none."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rmbg_client import RmbgClient, RmbgError
from rmbg_server.watchdog import stub_processes

pytestmark = pytest.mark.triton


def _load_with_kill(triton, model_repository, image: bytes, retries: int, n: int = 16, kill_after: float = 2.0):
    client = RmbgClient(triton.grpc_url, retries=retries, retry_backoff=0.5)
    client.remove(image)
    restarts_before = len(triton.watchdog.restarts)
    t0 = time.monotonic()
    log: list[tuple[float, float, str | None]] = []
    lock = threading.Lock()
    killed_at: list[float] = []

    def one(_: int) -> None:
        start = time.monotonic() - t0
        try:
            client.remove(image)
            error = None
        except RmbgError as exc:
            error = str(exc)
        with lock:
            log.append((start, time.monotonic() - t0, error))

    def killer() -> None:
        time.sleep(kill_after)
        pid = next(p for p, m in stub_processes(triton.process.pid, model_repository).items() if m == "isnet")
        killed_at.append(time.monotonic() - t0)
        os.kill(pid, signal.SIGKILL)

    k = threading.Thread(target=killer)
    k.start()
    with ThreadPoolExecutor(3) as pool:
        for i in range(n):
            pool.submit(one, i)
            time.sleep(0.35)
    k.join()
    deadline = time.monotonic() + 30
    while len(triton.watchdog.restarts) == restarts_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(triton.watchdog.restarts) > restarts_before, "the watchdog did not reload isnet"
    restored_at = triton.watchdog.restarts[-1][0] - (time.time() - (time.monotonic() - t0))
    return log, killed_at[0], restored_at


def test_without_retries_only_requests_before_recovery_fail(triton, model_repository, small_jpeg, record_property):
    log, killed, restored = _load_with_kill(triton, model_repository, small_jpeg, retries=0)
    failed = [(s, e) for s, _, e in log if e is not None]
    record_property("crash_failed_without_retries", len(failed))
    print(f"\nkill at {killed:.1f} s, service restored at {restored:.1f} s; {len(failed)} of {len(log)} failed")
    assert restored - killed < 10.0
    assert failed, "killing the engine's stub under load should fail the requests it was serving"
    for start, error in failed:
        assert start < restored + 0.5, f"a request sent after recovery failed: {error}"
        assert "not healthy" in error or "no available versions" in error or "unknown model" in error, error
    assert all(e is None for s, _, e in log if s > restored + 0.5)


def test_with_retries_no_request_is_lost(triton, model_repository, small_jpeg, record_property):
    log, _, _ = _load_with_kill(triton, model_repository, small_jpeg, retries=5)
    failed = [e for _, _, e in log if e is not None]
    record_property("crash_failed_with_retries", len(failed))
    assert not failed, failed
