"""Peak resident memory of one call, in this process, for tests that bound memory.

The kernel's peak-RSS counter (VmHWM) is reset before the call (``/proc/self/clear_refs``,
value 5), so it sees C allocations (Pillow, OpenCV, numpy) that tracemalloc does not. To keep
freed memory from hiding new allocations, glibc is told to return free memory to the kernel
first and to serve large blocks from fresh mappings (a fixed mmap threshold).
"""

from __future__ import annotations

import ctypes
import gc
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

_libc = ctypes.CDLL(None)
_M_MMAP_THRESHOLD = -3
_libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """(fn's result or the exception it raised, peak RSS above the RSS at the start, in bytes)."""
    gc.collect()
    _libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = _status_kb("VmRSS")
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
        result = exc
    return result, (_status_kb("VmHWM") - start) * 1024


def in_fresh_process(target: Callable[..., Any], *args: Any, timeout: float = 300) -> Any:
    """``target(*args)`` (a module-level function) in a new interpreter, its return value pickled back.

    A peak measured late in a long test process ran high: postprocess's rgba output took 20.0 bytes per
    output pixel after 590 other tests against 13.9 alone, and JPG 14.3 against 9.0 (a steady 16-18 MB,
    from threads and malloc arenas earlier tests left). A bound on a call that works across threads is
    measured where nothing ran before it.
    """
    code = ("import importlib, pickle, sys; "
            "f = getattr(importlib.import_module(sys.argv[1]), sys.argv[2]); "
            "args = pickle.load(sys.stdin.buffer); "
            "open(sys.argv[3], 'wb').write(pickle.dumps(f(*args)))")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.pickle"
        proc = subprocess.run([sys.executable, "-c", code, target.__module__, target.__qualname__, str(out)],
                              input=pickle.dumps(args), capture_output=True, cwd=ROOT, timeout=timeout)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return pickle.loads(out.read_bytes())
