"""API keys (flag, file, environment; Bearer and Key), per-key rate limits, the in-flight bound (429 +
Retry-After), cancelling a queued job, and the refusal to bind a public address without keys."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from rmbg_server.launcher import free_port
from tests.harness.cluster import rmbg_command
from tests.server.gateway.conftest import API_KEY, OTHER_KEY

pytestmark = pytest.mark.triton
THIRD_KEY = "test-key-CCCCCCCCCCCCCCCCCCCCCCCC"


@pytest.fixture(scope="module")
def keyed(gateway_factory, tmp_path_factory):
    """Keys from all three sources; one slow worker and one sync request at a time (fal served by IS-Net)."""
    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text(f"# gateway keys\n{API_KEY}\n")
    return gateway_factory("--api-key", THIRD_KEY, "--api-key-file", str(key_file), "--max-inflight", "1",
                           "--workers", "1", "--alias", "fal-ai/bria/background/remove=isnet",
                           "--rate-limit", "2", "--burst", "20", env={"RMBG_API_KEYS": OTHER_KEY})


def test_keys_are_required_except_for_health(keyed):
    assert keyed.get("/healthz").status_code == 200 and keyed.get("/readyz").status_code == 200
    for path in ("/metrics", "/docs", "/openapi.json"):
        assert keyed.get(path).status_code == 401, path
    # hosted outputs are signed capabilities, not keyed: an unsigned or forged name is simply not there
    assert keyed.get("/files/00000000-0000-4000-8000-000000000000.png").status_code == 404
    assert keyed.get(f"/files/9999999999/{'0' * 64}/00000000-0000-4000-8000-000000000000.png").status_code == 404
    refused = keyed.post("/v1", {"taskType": "getResponse", "taskUUID": "00000000-0000-4000-8000-000000000000"})
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["code"] == "invalidApiKey" and "WWW-Authenticate" in refused.headers
    wrong = keyed.get("/metrics", headers={"Authorization": f"Bearer {API_KEY[:-1]}X"})
    assert wrong.status_code == 401
    assert keyed.get("/metrics", headers={"Authorization": API_KEY}).status_code == 401  # no scheme
    for key in (API_KEY, OTHER_KEY, THIRD_KEY):
        for scheme in ("Bearer", "Key"):
            assert keyed.get("/metrics", headers={"Authorization": f"{scheme} {key}"}).status_code == 200


def test_keys_never_reach_the_log(keyed):
    assert API_KEY not in keyed.log_text() and OTHER_KEY not in keyed.log_text()


def test_rate_limit_per_key(keyed):
    headers = {"Authorization": f"Key {OTHER_KEY}"}
    started, allowed = time.monotonic(), 0  # burst 20, then 2 per second
    while (limited := keyed.get("/metrics", headers=headers)).status_code == 200 and allowed < 200:
        allowed += 1
    # (the tests before may have spent a few of this key's tokens moments ago)
    assert 15 <= allowed <= 20 + 2 * (time.monotonic() - started) + 1, allowed
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert keyed.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200  # own bucket


def test_a_full_gateway_answers_429_with_retry_after(keyed, images, http_server):
    """--max-inflight 1 and IS-Net (seconds per image): of two overlapping requests one runs, one gets 429."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"image_url": f"{http_server.base}/source_image.jpg"}
    responses: list = []
    first = threading.Thread(target=lambda: responses.append(
        keyed.post("/fal-ai/bria/background/remove", body, headers=headers)))
    first.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and first.is_alive() and not any(r.status_code == 429 for r in responses):
        responses.append(keyed.post("/fal-ai/bria/background/remove", body, headers=headers))
        time.sleep(0.05)
    first.join()
    codes = [r.status_code for r in responses]
    assert 200 in codes and 429 in codes, codes
    busy = next(r for r in responses if r.status_code == 429)
    assert int(busy.headers["Retry-After"]) >= 1 and "capacity" in busy.json()["detail"]


def test_cancel_a_queued_fal_request(keyed, images, http_server):
    """One worker, IS-Net: the second request is still queued when it is cancelled."""
    headers = {"Authorization": f"Key {API_KEY}"}
    body = {"image_url": f"{http_server.base}/source_image.jpg"}
    first = keyed.post("/queue/fal-ai/bria/background/remove", body, headers=headers).json()
    second = keyed.post("/queue/fal-ai/bria/background/remove", body, headers=headers).json()
    cancelled = keyed.request("PUT", second["cancel_url"], headers=headers)
    assert cancelled.status_code == 202 and cancelled.json() == {"status": "CANCELLATION_REQUESTED"}
    status = keyed.get(second["status_url"], headers=headers).json()
    assert status["status"] == "COMPLETED" and status["error"] == "cancelled"
    assert keyed.get(second["response_url"], headers=headers).status_code == 400
    done = keyed.wait_for(first["status_url"], lambda r: r.json()["status"] == "COMPLETED", headers=headers)
    assert done.json()["status"] == "COMPLETED" and "error" not in done.json()


def test_no_public_bind_without_keys(tmp_path):
    started = time.monotonic()
    result = subprocess.run([*rmbg_command(), "gateway", "--host", "0.0.0.0", "--port", str(free_port()), "--data-dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "RMBG_API_KEYS": ""})
    assert result.returncode == 2 and "refusing to bind 0.0.0.0 without API keys" in result.stderr
    assert time.monotonic() - started < 60
    short = subprocess.run([*rmbg_command(), "gateway", "--api-key", "short"], capture_output=True, text=True,
                           timeout=60)
    assert short.returncode == 2 and "shorter than 16 characters" in short.stderr


def test_auth_off_on_loopback(gateway):
    """The main gateway has no keys: every route answers without Authorization."""
    assert gateway.get("/metrics").status_code == 200
    assert gateway.get("/openapi.json").status_code == 200
