"""Triton ends with the process that launched it, however that process ends (kill -9 included).

tritonserver runs in a process group of its own, its Python-backend stubs with it, so that a Ctrl-C
meant for the launcher does not cut it off mid-request; but then nothing stops it when the launcher
dies without stopping it: it kept its ports and served on. ``watch`` starts this module as a small
process beside it, which polls its parent; once the launcher is gone it stops the group as the
launcher would (SIGTERM: Triton drains and stops its stubs), and kills whatever is left (a stub stopped
in its first moments ignores SIGTERM and outlived its server: measured; tests/cli/test_serve.py). It
leaves by itself once the group is gone (its leader reaped), and ``TritonServer.stop`` ends it.

Why not PR_SET_PDEATHSIG on tritonserver: Linux sends that signal when the launcher *thread* that
started the server ends (a server started from a thread pool would die with the pool), and it
reaches tritonserver only, never its stubs. ``getppid()`` changes only when the whole launcher
process is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

POLL_S = 0.25
GRACE_S = 20.0  # Triton's own --exit-timeout-secs (15) plus its stubs' shutdown


def kill_group(group: int, sig: int = signal.SIGKILL) -> None:
    """Signal every process left in ``group``; an empty group is not an error."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # members we may not signal: still there
        return True
    return True


def _leader_gone(group: int) -> bool:
    """The group's first process (tritonserver) has exited: what is left of the group is orphaned."""
    try:
        stat = (Path("/proc") / str(group) / "stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def stop_group(group: int, grace_s: float = GRACE_S) -> None:
    """SIGTERM, then SIGKILL once the server has exited (or after ``grace_s``) for any stub it left."""
    kill_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_alive(group) and not _leader_gone(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    kill_group(group, signal.SIGKILL)


def watch(group: int, stderr: IO[bytes] | None = None) -> subprocess.Popen:
    """Start the reaper for ``group`` (a process-group id: tritonserver's pid), bound to this process.

    It runs in a session of its own, so a signal sent to the launcher's process group spares it.
    """
    # -P: the working directory never shadows the package
    return subprocess.Popen([sys.executable, "-P", "-m", "rmbg_server.reaper", str(group), str(os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr if stderr is not None else subprocess.DEVNULL, start_new_session=True)


def main(argv: list[str]) -> int:
    group, launcher = int(argv[0]), int(argv[1])
    while group_alive(group):
        if os.getppid() != launcher:
            print(f"rmbg reaper: launcher pid {launcher} is gone; stopping tritonserver (process group {group})",
                  file=sys.stderr, flush=True)
            stop_group(group)
            return 0
        time.sleep(POLL_S)
    return 0  # the server stopped first: nothing to do


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
