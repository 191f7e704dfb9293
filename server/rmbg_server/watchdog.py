"""Restart models whose Python-backend stub died.

Measured here: Triton 2.51 does not restart a dead stub; the model stays READY and every
later request fails ("Stub process ... is not healthy"). We find each model's stubs in
/proc (argv[1] is ``<repo>/<model>/<version>/model.py``) and unload/load a model as soon as
one of its stubs is gone or a zombie.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def death_cause(pid: int) -> str:
    """Why a stub is no longer live, as far as /proc still tells."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return f"stub pid {pid} is gone (killed or exited, already reaped)"
    return f"stub pid {pid} exited and is a zombie (state {state})"


def stub_processes(server_pid: int, repo: Path | None = None) -> dict[int, str]:
    """pid -> model name for every live stub that is a child of ``server_pid``.

    With ``repo``, only stubs of models in that repository; else any (named from the path).
    """
    found: dict[int, str] = {}
    repo = repo.resolve() if repo is not None else None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            # fields after the ")" of comm: state ppid ...
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) != server_pid or state in ("Z", "X"):
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if len(argv) < 2 or not argv[0].endswith(b"triton_python_backend_stub"):
            continue
        model_py = Path(argv[1].decode(errors="replace"))
        if repo is None:
            model = model_py.parts[-3] if len(model_py.parts) >= 3 else str(model_py)
        else:
            try:
                model = model_py.relative_to(repo).parts[0]
            except ValueError:
                continue
        found[int(proc.name)] = model
    return found


class StubWatchdog(threading.Thread):
    """Polls every ``interval`` seconds; calls ``reload(model)`` when a stub vanished."""

    def __init__(self, server_pid: int, repo: Path, reload: Callable[[str], None],
                 interval: float = 1.0) -> None:
        super().__init__(name="rmbg-stub-watchdog", daemon=True)
        self.server_pid = server_pid
        self.repo = repo
        self.reload = reload
        self.interval = interval
        self.restarts: list[tuple[float, str]] = []
        self._stop = threading.Event()

    def run(self) -> None:
        known = stub_processes(self.server_pid, self.repo)
        while not self._stop.wait(self.interval):
            current = stub_processes(self.server_pid, self.repo)
            dead: dict[str, list[str]] = {}
            for pid, model in known.items():
                if pid not in current:
                    dead.setdefault(model, []).append(death_cause(pid))
            dead_models = sorted(dead)
            for model in dead_models:
                t0 = time.monotonic()
                cause = "; ".join(dead[model])
                log.warning("model %s: %s; reloading it", model, cause)
                try:
                    self.reload(model)
                    self.restarts.append((time.time(), model))
                    log.warning("model %s reloaded in %.1f s (cause: %s)", model, time.monotonic() - t0, cause)
                except Exception as exc:  # noqa: BLE001 - keep watching the others
                    log.error("model %s: reloading failed (%s); cause was: %s", model, exc, cause)
            known = stub_processes(self.server_pid, self.repo) if dead_models else current

    def stop(self) -> None:
        self._stop.set()
