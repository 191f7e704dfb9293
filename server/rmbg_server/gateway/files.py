"""Hosted outputs: the result images served at ``/files/{name}`` until their ttl runs out.

A name is ``{image_uuid}.{ext}`` and nothing else, so a request can never address a path of
its choosing. On disk each file has a JSON sidecar with its content type and expiry; the
sidecar is written last, so a file without one (a crash mid-write) is never served and the
sweeper removes it. With Redis every replica serves every file, and Redis expires them itself.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from rmbg_backend.contract import CONTENT_TYPES, EXTENSIONS
from rmbg_hosted.inputs import canonical_uuid

ORPHAN_AGE_S = 3600.0  # a data or temporary file without a sidecar this old is debris of a crash


@dataclass(frozen=True)
class StoredFile:
    name: str            # f"{image_uuid}.{ext}"
    content_type: str
    size: int
    expires_at: float


def check_uuid(image_uuid: str) -> str:
    """The uuid in canonical lower case; a ValueError names what is accepted."""
    found = canonical_uuid(image_uuid)
    if found is None:
        raise ValueError(f"image uuid {image_uuid!r} is not a UUID (36-character form or 32 hex digits)")
    return found


def file_name(image_uuid: str, content_type: str) -> str:
    ext = EXTENSIONS.get(content_type)
    if ext is None:
        raise ValueError(f"content type {content_type!r} is not hosted; accepted: {', '.join(EXTENSIONS)}")
    return f"{check_uuid(image_uuid)}.{ext}"


def parse_name(name: str) -> tuple[str, str] | None:
    """(uuid, ext) of a valid file name; None for anything else (the route answers 404)."""
    if not isinstance(name, str) or "." not in name:
        return None
    stem, ext = name.rsplit(".", 1)
    found = canonical_uuid(stem)
    return (found, ext) if found == stem and ext in CONTENT_TYPES else None


class FileStore(abc.ABC):
    @abc.abstractmethod
    async def put(self, image_uuid: str, data: bytes, content_type: str, ttl_s: int) -> StoredFile: ...

    @abc.abstractmethod
    async def get(self, name: str) -> tuple[bytes, str] | None:
        """(data, content type); None when the name is bad, or the file is missing or expired."""

    @abc.abstractmethod
    async def find(self, image_uuid: str) -> tuple[bytes, str] | None:
        """The live output of an earlier task by its imageUUID (for ``inputs.image``)."""

    @abc.abstractmethod
    async def sweep(self) -> int:
        """Delete expired files; returns how many."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class LocalFileStore(FileStore):
    """Files under one directory, each written to a temporary name, fsync'd, then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

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

    def _put(self, name: str, data: bytes, content_type: str, expires_at: float) -> None:
        self._write_atomic(self.root / name, data)
        meta = {"content_type": content_type, "size": len(data), "expires_at": expires_at}
        self._write_atomic(self.root / f"{name}.json", json.dumps(meta).encode())

    async def put(self, image_uuid: str, data: bytes, content_type: str, ttl_s: int) -> StoredFile:
        name = file_name(image_uuid, content_type)
        expires_at = time.time() + ttl_s
        await asyncio.to_thread(self._put, name, data, content_type, expires_at)
        return StoredFile(name, content_type, len(data), expires_at)

    def _meta(self, name: str) -> dict | None:
        try:
            meta = json.loads((self.root / f"{name}.json").read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return meta if meta.get("expires_at", 0) > time.time() else None

    def _get(self, name: str) -> tuple[bytes, str] | None:
        if parse_name(name) is None or (meta := self._meta(name)) is None:
            return None
        try:
            return (self.root / name).read_bytes(), meta["content_type"]
        except FileNotFoundError:
            return None

    async def get(self, name: str) -> tuple[bytes, str] | None:
        return await asyncio.to_thread(self._get, name)

    def _find(self, image_uuid: str) -> tuple[bytes, str] | None:
        for ext in CONTENT_TYPES:
            if found := self._get(f"{image_uuid}.{ext}"):
                return found
        return None

    async def find(self, image_uuid: str) -> tuple[bytes, str] | None:
        try:
            image_uuid = check_uuid(image_uuid)
        except ValueError:
            return None
        return await asyncio.to_thread(self._find, image_uuid)

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
            if has_sidecar and parse_name(name.removesuffix(".json")):
                continue  # a sidecar, or a file that has one
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > ORPHAN_AGE_S:
                    path.unlink()
                    removed += 1
        return removed

    async def sweep(self) -> int:
        return await asyncio.to_thread(self._sweep)

    async def close(self) -> None:
        return None


class RedisFileStore(FileStore):
    """One Redis hash per output (data, content type, extension) with the output's ttl as its expiry."""

    def __init__(self, url: str, *, prefix: str = "{rmbg}:") -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(url, decode_responses=False, health_check_interval=30)

    def _key(self, image_uuid: str) -> str:
        return f"{self.prefix}file:{image_uuid}"

    async def put(self, image_uuid: str, data: bytes, content_type: str, ttl_s: int) -> StoredFile:
        name = file_name(image_uuid, content_type)
        key = self._key(name.rsplit(".", 1)[0])
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"data": data, "content_type": content_type, "name": name})
            pipe.expire(key, max(int(ttl_s), 1))
            await pipe.execute()
        return StoredFile(name, content_type, len(data), time.time() + ttl_s)

    async def _load(self, image_uuid: str, name: str | None) -> tuple[bytes, str] | None:
        data, content_type, stored_name = await self._redis.hmget(self._key(image_uuid), "data", "content_type", "name")
        if data is None or (name is not None and stored_name != name.encode()):
            return None
        return data, content_type.decode()

    async def get(self, name: str) -> tuple[bytes, str] | None:
        parsed = parse_name(name)
        return await self._load(parsed[0], name) if parsed else None

    async def find(self, image_uuid: str) -> tuple[bytes, str] | None:
        try:
            return await self._load(check_uuid(image_uuid), None)
        except ValueError:
            return None

    async def sweep(self) -> int:
        return 0  # Redis expires the keys itself

    async def close(self) -> None:
        await self._redis.aclose()


def open_file_store(data_dir: Path, redis_url: str | None = None) -> FileStore:
    """Files under ``data_dir/files`` (the embedded default), or in Redis so any replica serves any file."""
    if redis_url:
        return RedisFileStore(redis_url)
    return LocalFileStore(Path(data_dir) / "files")
