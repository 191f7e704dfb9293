"""Jobs in Redis, shared by every gateway replica that points ``--redis`` at the same server.

Every transition is one Lua script (``lua/*.lua``, beside this module), so it is atomic across
replicas; leases and expiries use the Redis server's clock (TIME), so replicas with skewed clocks
agree on when a lease ran out. Keys share the {rmbg} hash tag: one slot, so the scripts also run
on a Redis Cluster.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Literal

from rmbg_server.gateway.jobs.model import STATUSES, TERMINAL, Job, decode_job, encode_job, finish_column
from rmbg_server.gateway.jobs.store import JobStore, QueueFull

SCRIPTS = ("reserve", "submit", "claim", "claim_notification", "leased", "cancel", "sweep")


@cache
def lua(name: str) -> str:
    """A script's source, prefixed with the one that reads the server's clock into ``now``."""
    folder = resources.files("rmbg_server.gateway.jobs") / "lua"
    return (folder / "now.lua").read_text() + (folder / f"{name}.lua").read_text()


REDIS_PREFIX = "{rmbg}:"


class RedisJobStore(JobStore):
    """Jobs in Redis, shared by every gateway replica that points ``--redis`` at the same server.

    A write is acknowledged by Redis before ``submit`` returns; surviving a Redis restart is the
    Redis server's persistence setting (``appendonly yes`` with ``appendfsync everysec`` or ``always``).
    """

    def __init__(self, url: str, *, prefix: str = REDIS_PREFIX) -> None:
        super().__init__()
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
        self._scripts = {name: self._redis.register_script(lua(name)) for name in SCRIPTS}

    async def _call(self, script: str, *args: Any) -> Any:
        return await self._scripts[script](keys=[self.prefix], args=list(args))

    async def reserve_id(self, job_id: str, ttl_s: int) -> bool:
        return bool(await self._call("reserve", job_id, max(int(ttl_s), 1)))

    async def release_id(self, job_id: str) -> None:
        await self._redis.delete(f"{self.prefix}rsv:{job_id}")

    async def _store(self, job: Job, max_queued: int | None) -> bool:
        pairs = [x for name, value in encode_job(job).items() if value is not None for x in (name, str(value))]
        stored = int(await self._call("submit", job.id, job.status, job.ttl_s, -1 if max_queued is None else max_queued,
                                      *pairs))
        if stored < 0:
            raise QueueFull(-stored - 1)
        return bool(stored)

    async def get(self, job_id: str) -> Job | None:
        row = await self._redis.hgetall(f"{self.prefix}job:{job_id}")
        return decode_job(row) if row else None

    async def _claim(self, script: str, worker_id: str, lease_s: float) -> Job | None:
        flat = await self._call(script, worker_id, lease_s)
        return decode_job(dict(zip(flat[::2], flat[1::2], strict=True))) if flat else None

    async def claim(self, worker_id: str, lease_s: float) -> Job | None:
        return await self._claim("claim", worker_id, lease_s)

    async def claim_notification(self, worker_id: str, lease_s: float) -> Job | None:
        return await self._claim("claim_notification", worker_id, lease_s)

    async def notified(self, job_id: str, worker_id: str) -> bool:
        return bool(await self._call("leased", job_id, worker_id, "notified"))

    async def extend(self, job_id: str, worker_id: str, lease_s: float) -> bool:
        return bool(await self._call("leased", job_id, worker_id, "extend", lease_s))

    async def _release(self, job_id: str, worker_id: str) -> bool:
        return bool(await self._call("leased", job_id, worker_id, "release"))

    async def finish(self, job_id: str, worker_id: str, status: Literal["completed", "failed"],
                     body: dict[str, Any], *, notify_lease_s: float | None = None) -> bool:
        column = finish_column(status)
        return bool(await self._call("leased", job_id, worker_id, "finish", status, column,
                                     json.dumps(body, separators=(",", ":")),
                                     -1 if notify_lease_s is None else notify_lease_s))

    async def cancel(self, job_id: str) -> bool:
        return bool(await self._call("cancel", job_id))

    async def counts(self) -> dict[str, int]:
        keys = {"queued": "queue", "processing": "leases"} | {s: f"done:{s}" for s in TERMINAL}
        async with self._redis.pipeline(transaction=True) as pipe:
            for status in STATUSES:
                pipe.zcard(self.prefix + keys[status])
            sizes = await pipe.execute()
        return dict(zip(STATUSES, sizes, strict=True))

    async def sweep(self) -> int:
        return int(await self._call("sweep"))

    async def close(self) -> None:
        await self._redis.aclose()


