"""The reaper with real processes and no Triton: a stand-in server (a process group whose leader exits on
SIGTERM and leaves a child that ignores it, as tritonserver leaves a stub) and a stand-in launcher.
With Triton itself: tests/cli/test_serve.py and tests/cli/test_up.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.harness.processes import alive, children, cmdline, group_members, wait_for, wait_gone

# A group leader that dies of SIGTERM, with a child that ignores it.
SERVER = ["/bin/sh", "-c", "(trap '' TERM INT; exec sleep 300) & exec sleep 300"]
LAUNCHER = ("import subprocess, sys; from rmbg_server import reaper; "
            f"server = subprocess.Popen({SERVER!r}, start_new_session=True); reaper.watch(server.pid); "
            "print(server.pid, flush=True); server.wait(); sys.stdin.read()")  # reaps its server, as launchers do


def _launch() -> tuple[subprocess.Popen, int, int]:
    """(the launcher, the server's process group, the reaper's pid) once all are running."""
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
    group = int(launcher.stdout.readline())
    wait_for(launcher.pid, lambda: len(group_members(group)) == 2, 10, "the server and its child")
    wait_for(launcher.pid, lambda: any("rmbg_server.reaper" in cmdline(c) for c in children(launcher.pid)), 10,
             "the reaper")
    reaper = next(c for c in children(launcher.pid) if "rmbg_server.reaper" in cmdline(c))
    return launcher, group, reaper


def test_the_server_group_ends_when_its_launcher_is_killed():
    launcher, group, reaper = _launch()
    members = group_members(group)
    try:
        t0 = time.monotonic()
        launcher.kill()
        launcher.wait(10)
        assert not wait_gone(members | {reaper}, timeout=10), [cmdline(p) for p in members if alive(p)]
        assert time.monotonic() - t0 < 5  # SIGKILL follows as soon as the leader is gone, not after the grace
    finally:
        for pid in group_members(group):
            os.kill(pid, signal.SIGKILL)


def test_the_reaper_leaves_when_the_server_ends_first():
    launcher, group, reaper = _launch()
    try:
        os.killpg(group, signal.SIGKILL)
        assert not wait_gone({reaper}, timeout=5)  # polls every 0.25 s
        assert launcher.poll() is None  # the launcher is untouched
    finally:
        launcher.communicate("", timeout=10)
