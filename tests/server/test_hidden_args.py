"""Secrets among a process's own arguments, shown as a placeholder (the real processes: tests/cli/test_gateway.py,
tests/cli/test_up.py; tritonserver's admin key: tests/integration/test_served.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rmbg_server.hidden_args import PLACEHOLDER, masked_arguments
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
