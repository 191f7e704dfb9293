"""Stored files: hosted outputs and queued inputs, per tenant, on disk or in Redis (``store`` says why)."""

from __future__ import annotations

from pathlib import Path

from rmbg_server.gateway.files.local import ORPHAN_AGE_S, LocalFileStore
from rmbg_server.gateway.files.redis import RedisFileStore
from rmbg_server.gateway.files.store import INPUT_TYPE, FileStore, QuotaExceeded, StoredFile


def open_file_store(data_dir: Path, redis_url: str | None = None) -> FileStore:
    """Files under ``data_dir/files`` (the embedded default), or in Redis so any replica serves any file."""
    if redis_url:
        return RedisFileStore(redis_url)
    return LocalFileStore(Path(data_dir) / "files")


__all__ = ["INPUT_TYPE", "ORPHAN_AGE_S", "FileStore", "LocalFileStore", "QuotaExceeded", "RedisFileStore",
           "StoredFile", "open_file_store"]
