"""Peak resident memory of one call, in this process, for tests that bound memory.

The kernel's peak-RSS counter (VmHWM) is reset before the call (``/proc/self/clear_refs``,
value 5), so it sees C allocations (Pillow, OpenCV, numpy) that tracemalloc does not. To keep
freed memory from hiding new allocations, glibc is told to return free memory to the kernel
first and to serve large blocks from fresh mappings (a fixed mmap threshold).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from typing import Any

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
