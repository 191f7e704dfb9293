"""Secrets among a process's own arguments, shown as a placeholder (the real processes: tests/cli/test_gateway.py,
tests/cli/test_up.py; tritonserver's admin key: tests/integration/test_served.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rmbg_server.hidden_args import PLACEHOLDER, masked_arguments, redacted_url, url_has_password
from tests.harness.processes import as_another_user

KEY = b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("args", "shown"), [
    ([b"rmbg", b"gateway", b"--api-key", KEY, b"--port", b"80"], [b"rmbg", b"gateway", b"--api-key", b"<hidden>",
                                                                   b"--port", b"80"]),
    ([b"rmbg", b"--api-key=" + KEY], [b"rmbg", b"--api-key=<hidden>"]),
    ([b"rmbg", b"--note", b"x" + KEY], [b"rmbg", b"--note", b"x" + KEY]),  # only whole values are secrets
    ([b"rmbg", b"--api-key", b"abc"], [b"rmbg", b"--api-key", b"***"]),  # the block cannot grow
])
def test_secrets_are_replaced_and_the_block_keeps_its_length(args, shown):
    block = b"\0".join(args) + b"\0"
    masked = masked_arguments(block, [KEY, b"abc"])
    assert len(masked) == len(block)
    assert masked.rstrip(b"\0").split(b"\0") == shown


def test_a_process_hides_its_own_arguments_from_other_users():
    code = ("import sys; from rmbg_server.hidden_args import hide_own_arguments; "
            "print(hide_own_arguments([sys.argv[2]]), sys.argv[1:], flush=True); sys.stdin.read()")
    process = subprocess.Popen([sys.executable, "-c", code, "--api-key", KEY.decode()], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == f"True ['--api-key', '{KEY.decode()}']"  # sys.argv is intact
        seen = as_another_user("cat", f"/proc/{process.pid}/cmdline").stdout
        assert KEY not in seen and b"\0--api-key\0" + PLACEHOLDER.encode() + b"\0" in seen
    finally:
        process.communicate("", timeout=30)


@pytest.mark.parametrize(("url", "secret", "shown"), [
    ("redis://:s3cret@db:6379/0", True, "redis://:***@db:6379/0"),
    ("rediss://user:s3cret@db.example:6380", True, "rediss://user:***@db.example:6380"),
    ("redis://db:6379/0", False, "redis://db:6379/0"),
    ("redis://user@db", False, "redis://user@db"),
    ("unix:///run/redis.sock", False, "unix:///run/redis.sock"),
])
def test_a_redis_url_with_a_password_is_a_secret_and_is_printed_without_it(url, secret, shown):
    assert url_has_password(url) is secret
    assert redacted_url(url) == shown and "s3cret" not in redacted_url(url)


def test_the_gateway_hides_a_redis_password_from_other_users():
    url = "redis://:pw-" + KEY.decode() + "@127.0.0.1:1/0"
    code = ("import argparse, sys; from rmbg_server.hidden_args import hide_secret_flags; "
            "print(hide_secret_flags(argparse.Namespace(redis=sys.argv[2], api_key=[sys.argv[4]])), flush=True); "
            "sys.stdin.read()")
    process = subprocess.Popen([sys.executable, "-c", code, "--redis", url, "--api-key", "k-" + KEY.decode()],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "True"
        seen = as_another_user("cat", f"/proc/{process.pid}/cmdline").stdout
        assert KEY not in seen and seen.count(PLACEHOLDER.encode()) == 2
    finally:
        process.communicate("", timeout=30)
