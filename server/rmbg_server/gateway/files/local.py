"""Stored files in one directory (the embedded default, ``--data-dir/files``).

Each file has a JSON sidecar with its content type, size, expiry and tenant; the sidecar is written
last, so a file without one (a crash mid-write) is never served and the sweeper removes it. Usage
per tenant comes from an index of the sidecars, read once and kept current by this process (the
sweeper re-reads it, so gateways sharing one directory agree within a sweep).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import threading
import time
import uuid
from pathlib import Path

from rmbg_server.gateway.files.store import (
    FILE_TYPES,
    FileStore,
    QuotaExceeded,
    StoredFile,
    check_uuid,
    file_name,
    parse_name,
)

ORPHAN_AGE_S = 3600.0  # a data or temporary file without a sidecar this old is debris of a crash
SECRET_FILE = ".signing-key"


class LocalFileStore(FileStore):
    """Files under one directory, each written to a temporary name, fsync'd, then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # the index, and quota check + write, one at a time
        self._index: dict[str, tuple[str | None, int, float]] | None = None  # name -> (tenant, size, expires)

    # -- writing ------------------------------------------------------------------------------
    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def _put(self, name: str, data: bytes, content_type: str, expires_at: float, tenant: str | None,
             quota: int | None) -> None:
        with self._lock:
            index = self._ensure_index()
            if quota is not None:
                used = self._used(index, tenant, time.time())
                if used + len(data) > quota:
                    raise QuotaExceeded(used, len(data), quota)
            self._write_atomic(self.root / name, data)
            meta = {"content_type": content_type, "size": len(data), "expires_at": expires_at, "tenant": tenant}
            self._write_atomic(self.root / f"{name}.json", json.dumps(meta).encode())
            index[name] = (tenant, len(data), expires_at)

    async def put(self, image_uuid: str, data: bytes, content_type: str, ttl_s: int, *, tenant: str | None = None,
                  quota_bytes: int | None = None) -> StoredFile:
        name = file_name(image_uuid, content_type)
        expires_at = time.time() + ttl_s
        await asyncio.to_thread(self._put, name, data, content_type, expires_at, tenant, quota_bytes)
        return StoredFile(name, content_type, len(data), expires_at)

    # -- reading ------------------------------------------------------------------------------
    def _meta(self, name: str) -> dict | None:
        try:
            meta = json.loads((self.root / f"{name}.json").read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return meta if meta.get("expires_at", 0) > time.time() else None

    def _load(self, name: str, tenant: str | None, any_tenant: bool) -> tuple[bytes, str] | None:
        meta = self._meta(name)
        if meta is None or not (any_tenant or meta.get("tenant") == tenant):
            return None
        try:
            return (self.root / name).read_bytes(), meta["content_type"]
        except FileNotFoundError:
            return None

    async def get(self, name: str) -> tuple[bytes, str] | None:
        if parse_name(name) is None:
            return None
        return await asyncio.to_thread(self._load, name, None, True)

    def _find(self, image_uuid: str, tenant: str | None) -> tuple[bytes, str] | None:
        for ext in FILE_TYPES:
            if found := self._load(f"{image_uuid}.{ext}", tenant, False):
                return found
        return None

    async def find(self, image_uuid: str, tenant: str | None = None) -> tuple[bytes, str] | None:
        try:
            image_uuid = check_uuid(image_uuid)
        except ValueError:
            return None
        return await asyncio.to_thread(self._find, image_uuid, tenant)

    def _delete(self, image_uuid: str) -> None:
        with self._lock:
            for ext in FILE_TYPES:
                name = f"{image_uuid}.{ext}"
                for path in (self.root / f"{name}.json", self.root / name):  # the sidecar first: never half-served
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                if self._index is not None:
                    self._index.pop(name, None)

    async def delete(self, image_uuid: str) -> None:
        with contextlib.suppress(ValueError):
            await asyncio.to_thread(self._delete, check_uuid(image_uuid))

    # -- usage --------------------------------------------------------------------------------
    def _scan(self) -> dict[str, tuple[str | None, int, float]]:
        index = {}
        for meta_path in self.root.glob("*.json"):
            name = meta_path.name.removesuffix(".json")
            if parse_name(name) is None:
                continue
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                meta = json.loads(meta_path.read_bytes())
                index[name] = (meta.get("tenant"), int(meta["size"]), float(meta["expires_at"]))
        return index

    def _ensure_index(self) -> dict[str, tuple[str | None, int, float]]:
        if self._index is None:
            self._index = self._scan()
        return self._index

    @staticmethod
    def _used(index: dict[str, tuple[str | None, int, float]], tenant: str | None, now: float) -> int:
        return sum(size for owner, size, expires in index.values() if owner == tenant and expires > now)

    def _usage(self, tenant: str | None) -> int:
        with self._lock:
            return self._used(self._ensure_index(), tenant, time.time())

    async def usage(self, tenant: str | None) -> int:
        return await asyncio.to_thread(self._usage, tenant)

    # -- the signing key ----------------------------------------------------------------------
    def _secret(self) -> bytes:
        path = self.root / SECRET_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            for _ in range(50):  # another process may be writing it right now
                if len(key := path.read_bytes()) == 32:
                    return key
                time.sleep(0.01)
            raise RuntimeError(f"{path} is not a 32-byte key; delete it to make a new one") from None
        key = secrets.token_bytes(32)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        return key

    async def secret(self) -> bytes:
        return await asyncio.to_thread(self._secret)

    # -- sweeping -----------------------------------------------------------------------------
    def _sweep(self) -> int:
        now, removed = time.time(), 0
        for meta_path in self.root.glob("*.json"):
            if parse_name(meta_path.name.removesuffix(".json")) is None:
                continue  # a temporary file being written: left to the orphan rule below
            try:
                expired = json.loads(meta_path.read_bytes()).get("expires_at", 0) <= now
            except (FileNotFoundError, ValueError):
                expired = True
            if expired:
                with contextlib.suppress(FileNotFoundError):
                    (self.root / meta_path.name.removesuffix(".json")).unlink()
                with contextlib.suppress(FileNotFoundError):
                    meta_path.unlink()
                removed += 1
        for path in self.root.iterdir():  # data without a sidecar, temporary files of a crashed write
            name = path.name
            has_sidecar = name.endswith(".json") or path.with_name(f"{name}.json").exists()
            if name == SECRET_FILE or (has_sidecar and parse_name(name.removesuffix(".json"))):
                continue  # the key, a sidecar, or a file that has one
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > ORPHAN_AGE_S:
                    path.unlink()
                    removed += 1
        index = self._scan()
        with self._lock:
            self._index = index
        return removed

    async def sweep(self) -> int:
        return await asyncio.to_thread(self._sweep)

    async def close(self) -> None:
        return None
