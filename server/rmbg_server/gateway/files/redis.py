"""Stored files in Redis: every replica serves every file, Redis expires them itself.

One hash per file (data, content type, name, tenant) with the file's ttl as its expiry; per tenant
a sorted set of live files and a byte counter, kept by the one Lua script that stores a file
(``lua/put.lua``), so the quota holds across replicas.
"""

from __future__ import annotations

import secrets
import time
from importlib import resources

from rmbg_server.gateway.files.store import FileStore, QuotaExceeded, StoredFile, check_uuid, file_name, parse_name


class RedisFileStore(FileStore):
    def __init__(self, url: str, *, prefix: str = "{rmbg}:") -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(url, decode_responses=False, health_check_interval=30)
        source = (resources.files("rmbg_server.gateway.files") / "lua" / "put.lua").read_text()
        self._put_script = self._redis.register_script(source)

    def _key(self, image_uuid: str) -> str:
        return f"{self.prefix}file:{image_uuid}"

    async def put(self, image_uuid: str, data: bytes, content_type: str, ttl_s: int, *, tenant: str | None = None,
                  quota_bytes: int | None = None) -> StoredFile:
        name = file_name(image_uuid, content_type)
        stored = int(await self._put_script(keys=[self.prefix], args=[
            name.rsplit(".", 1)[0], tenant or "", name, content_type, max(int(ttl_s), 1),
            -1 if quota_bytes is None else quota_bytes, data]))
        if stored < 0:
            raise QuotaExceeded(-stored - 1, len(data), quota_bytes or 0)
        return StoredFile(name, content_type, len(data), time.time() + ttl_s)

    async def _load(self, image_uuid: str, name: str | None, tenant: str | None,
                    any_tenant: bool) -> tuple[bytes, str] | None:
        data, content_type, stored_name, owner = await self._redis.hmget(
            self._key(image_uuid), "data", "content_type", "name", "tenant")
        if data is None or (name is not None and stored_name != name.encode()):
            return None
        if not any_tenant and (owner or b"").decode() != (tenant or ""):
            return None
        return data, content_type.decode()

    async def get(self, name: str) -> tuple[bytes, str] | None:
        parsed = parse_name(name)
        return await self._load(parsed[0], name, None, True) if parsed else None

    async def find(self, image_uuid: str, tenant: str | None = None) -> tuple[bytes, str] | None:
        try:
            return await self._load(check_uuid(image_uuid), None, tenant, False)
        except ValueError:
            return None

    async def delete(self, image_uuid: str) -> None:
        try:
            key = self._key(check_uuid(image_uuid))
        except ValueError:
            return
        await self._redis.delete(key)  # the tenant's counter forgets it when its ttl ends

    async def usage(self, tenant: str | None) -> int:
        live = f"{self.prefix}usage:{tenant or ''}"
        sizes = await self._redis.hgetall(f"{self.prefix}sizes:{tenant or ''}")
        alive = set(await self._redis.zrangebyscore(live, time.time(), "+inf"))
        return sum(int(size) for member, size in sizes.items() if member in alive)

    async def secret(self) -> bytes:
        key = f"{self.prefix}signing-key"
        await self._redis.set(key, secrets.token_bytes(32), nx=True)  # the first replica's key wins
        return await self._redis.get(key)

    async def sweep(self) -> int:
        return 0  # Redis expires the keys itself

    async def close(self) -> None:
        await self._redis.aclose()
