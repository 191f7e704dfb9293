"""Processes as /proc shows them, for tests that a server leaves nothing behind.

Other servers may run on the same machine (other test sessions), so tests look processes up by pid,
by parent or by a path only they use (their model repository), never by a program's name alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (state, ppid, pgrp, ...); None once it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """Running: present and not a zombie (a zombie holds no port and runs nothing)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")[:-1]]
    except OSError:
        return []


def _pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def children(pid: int) -> list[int]:
    return [p for p in _pids() if (fields := _stat(p)) is not None and int(fields[1]) == pid and alive(p)]


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def group_members(pgid: int) -> set[int]:
    """Live processes in process group ``pgid`` (tritonserver's group holds its stubs)."""
    return {p for p in _pids() if (fields := _stat(p)) is not None and int(fields[2]) == pgid and alive(p)}


def mentioning(text: str) -> set[int]:
    """Live processes with ``text`` in their command line (a test's own model repository path)."""
    return {p for p in _pids() if alive(p) and any(text in arg for arg in cmdline(p))}


def wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait up to ``timeout`` seconds for ``pids`` to end; returns those still alive."""
    left = set(pids)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {p for p in left if alive(p)}
    return left


def wait_for(pid: int, predicate, timeout: float, what: str) -> None:
    """Poll until ``predicate()`` holds, failing early if ``pid`` (the process under test) ends."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if not alive(pid):
            raise AssertionError(f"pid {pid} ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.05)


def as_another_user(*cmd: str) -> subprocess.CompletedProcess:
    """Run ``cmd`` as user nobody when we are root (the test machine), else as ourselves: what any local
    user sees (``ps``, ``/proc/PID/cmdline``)."""
    if os.geteuid() == 0 and shutil.which("setpriv"):
        cmd = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd)
    return subprocess.run(cmd, capture_output=True, timeout=30)
