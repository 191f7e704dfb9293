"""Where downloads and converted weights live: built once, never fetched twice."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """``$RMBG_CACHE_DIR``, else ``$XDG_CACHE_HOME/rmbg``, else ``~/.cache/rmbg``."""
    root = os.environ.get("RMBG_CACHE_DIR")
    if root:
        path = Path(root)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "rmbg"
    path.mkdir(parents=True, exist_ok=True)
    return path


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GB"


def file_digest(path: Path) -> str:
    """sha256 of a file, read in blocks: weights are hundreds of megabytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
