"""Free the Python backend's shared-memory regions that no live process maps any more.

Measured here: every Python-backend model instance gets a 64 MB region in /dev/shm, and a
tritonserver that dies by SIGKILL or a crash leaves all of them behind. /dev/shm is tmpfs, so
that is RAM; in Kubernetes it is a memory-backed emptyDir that survives container restarts and
counts against the pod's limit, so a crash-looping server eats its pod. A region is garbage
when no process maps it; we only ever touch our own user's regions, and only ones older than a
grace period, so a region a starting server has created but not mapped yet is left alone.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from rmbg_server.watchdog import stub_processes

log = logging.getLogger(__name__)

REGION_PREFIX = "triton_python_backend_shm_region_"
SHM_DIR = Path("/dev/shm")
PROC = Path("/proc")


def mapped_names(shm_dir: Path = SHM_DIR, proc: Path = PROC) -> set[str] | None:
    """Names of files under ``shm_dir`` that some process of this user maps; None if unsure.

    None means a Triton process of ours could not be read, and the caller must then delete
    nothing. Other unreadable processes (non-dumpable ones, such as a sandbox's init) cannot
    be Triton's and are skipped; one that vanished mid-scan is skipped too.
    """
    prefix = f"{shm_dir}/"
    uid = os.getuid()
    names: set[str] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            maps = (entry / "maps").read_text(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        except PermissionError:
            if _is_triton(entry):
                return None
            continue
        for line in maps.splitlines():
            at = line.find(prefix)
            if at >= 0:
                names.add(line[at + len(prefix):].removesuffix(" (deleted)").strip())
    return frozenset(names)


def _is_triton(proc_entry: Path) -> bool:
    try:
        comm = (proc_entry / "comm").read_text().strip()
    except OSError:
        return True  # cannot tell: assume the worst
    return comm == "tritonserver" or comm.startswith("triton_python")


def orphan_regions(min_age_s: float = 60.0, shm_dir: Path = SHM_DIR, proc: Path = PROC,
                   now: float | None = None, known: frozenset[str] = frozenset()) -> list[Path]:
    """This user's Python-backend regions that nobody maps and that nobody has written to for
    ``min_age_s`` (tmpfs moves the mtime on every write); those named in ``known`` at any age."""
    if not shm_dir.is_dir():
        return []
    mapped = mapped_names(shm_dir, proc)
    if mapped is None:
        return []
    now = time.time() if now is None else now
    uid = os.getuid()
    found = []
    for path in shm_dir.glob(f"{REGION_PREFIX}*"):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == uid and path.name not in mapped and (path.name in known or now - st.st_mtime >= min_age_s):
            found.append(path)
    return found


def stub_regions(server_pid: int) -> frozenset[str]:
    """The regions the live stubs of ``server_pid`` use (a stub's argv[2] names its region)."""
    names = set()
    for pid in stub_processes(server_pid):
        try:
            argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[2].startswith(REGION_PREFIX.encode()):
            names.add(argv[2].decode(errors="replace"))
    return frozenset(names)


def sweep_orphan_regions(min_age_s: float = 60.0, shm_dir: Path = SHM_DIR, proc: Path = PROC,
                         known: frozenset[str] = frozenset()) -> int:
    """Delete the orphaned regions, and those in ``known`` (a stopped server's) at any age.

    Returns the bytes freed, and logs them.
    """
    freed = count = 0
    for path in orphan_regions(min_age_s, shm_dir, proc, known=known):
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        freed += size
        count += 1
    if count:
        log.warning("freed %d orphaned Python-backend shared-memory region(s) in %s (%.0f MB) left by "
                    "a server that did not free them itself", count, shm_dir, freed / 2**20)
    return freed
