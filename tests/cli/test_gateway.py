"""``rmbg gateway`` as a real process: secrets given as flags do not show in other users' process lists
(README, "Limits and security"; the technique: server/rmbg_server/hidden_args.py)."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import httpx

from rmbg_server.launcher import free_port
from tests.harness.cluster import http_status, rmbg_command
from tests.harness.processes import as_another_user


def test_api_keys_and_the_webhook_secret_given_as_flags_do_not_show(tmp_path: Path):
    """Before: `ps` showed `--api-key KEY` to every local user."""
    key, other_key, webhook_secret = (secrets.token_hex(16), secrets.token_hex(16), secrets.token_hex(16))
    port = free_port()
    cmd = [*rmbg_command(), "gateway", "--port", str(port), "--triton", "127.0.0.1:1", "--data-dir",
           str(tmp_path / "data"), "--api-key", key, f"--api-key={other_key}", "--webhook-secret", webhook_secret]
    with open(tmp_path / "gateway.log", "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while http_status(f"http://127.0.0.1:{port}/healthz") != 200:
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
            time.sleep(0.1)
        seen = as_another_user("cat", f"/proc/{process.pid}/cmdline")
        assert seen.returncode == 0
        for secret in (key, other_key, webhook_secret):
            assert secret.encode() not in seen.stdout
            assert secret.encode() not in as_another_user("ps", "-eo", "args").stdout
        assert b"\0--api-key\0<hidden>\0--api-key=<hidden>\0--webhook-secret\0<hidden>\0" in seen.stdout
        base = f"http://127.0.0.1:{port}"
        for accepted in (key, other_key):  # the gateway itself got the real keys
            assert httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {accepted}"}).status_code == 200
        assert httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer <hidden>"}).status_code == 401
    finally:
        process.terminate()
        process.wait(30)
