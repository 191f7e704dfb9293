"""Durable jobs for the gateway: async tasks, the fal queue and the GMI queue share one store.

Why this shape: an accepted job must survive kill -9 of the gateway and complete exactly once,
and replicas must share jobs through Redis. No well-kept queue library covers both an embedded
SQLite file and Redis with visibility-timeout leases (huey has both backends but a dequeued task
whose worker dies is gone; arq and rq are Redis-only, saq Redis/Postgres, procrastinate
Postgres), so the state machine is kept small and explicit here:

    queued --claim--> processing --finish--> completed | failed
    queued --cancel--> cancelled
    processing, lease expired (its worker died) --claim--> processing again, attempts + 1

``finish`` lands only while the caller still holds the lease, so a worker that lost its job to a
re-claim cannot overwrite the result: running is at-least-once, completion is exactly-once.
What follows a finish (the webhook) is durable too: the finishing worker keeps a notification
lease on the job until ``notified``; if it dies first, ``claim_notification`` hands the job to
another worker once that lease expires, so a webhook is delivered at least once, normally once.
Finished and cancelled jobs are kept ``ttl_s`` seconds after they finish, then swept; queued and
processing jobs are never swept (an accepted job must complete).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "processing", "completed", "failed", "cancelled"]
STATUSES: tuple[JobStatus, ...] = ("queued", "processing", "completed", "failed", "cancelled")
TERMINAL: tuple[JobStatus, ...] = ("completed", "failed", "cancelled")
T = TypeVar("T")


@dataclass
class Job:
    id: str                          # the taskUUID, or the fal / GMI request_id
    protocol: str                    # "task" | "fal" | "gmi"
    request: dict[str, Any]          # everything needed to run it, JSON-serialisable
    status: JobStatus = "queued"
    result: dict[str, Any] | None = None   # protocol-specific success body
    error: dict[str, Any] | None = None    # protocol-specific error body
    webhook_url: str | None = None
    ttl_s: int = 86400
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    attempts: int = 0


_JSON_FIELDS = ("request", "result", "error")
_JOB_FIELDS = tuple(f.name for f in fields(Job))


def _encode(job: Job) -> dict[str, Any]:
    """The job as column/field values: JSON text for the dicts, None for absent values."""
    out: dict[str, Any] = {}
    for name in _JOB_FIELDS:
        value = getattr(job, name)
        out[name] = json.dumps(value, separators=(",", ":")) if name in _JSON_FIELDS and value is not None else value
    return out


def _decode(row: dict[str, Any]) -> Job:
    """A job from a SQLite row or a Redis hash (where every value is text)."""
    def text(name: str) -> Any:
        value = row.get(name)
        return None if value in (None, "") else value

    return Job(
        id=row["id"], protocol=row["protocol"], request=json.loads(row["request"]), status=row["status"],
        result=json.loads(text("result")) if text("result") else None,
        error=json.loads(text("error")) if text("error") else None,
        webhook_url=text("webhook_url"), ttl_s=int(row["ttl_s"]), created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]), attempts=int(row["attempts"]),
    )


def _check_submittable(job: Job) -> None:
    if job.status == "processing":
        raise ValueError(f"job {job.id}: a job is submitted queued (or already finished), never 'processing'")
    if job.status not in STATUSES:
        raise ValueError(f"job {job.id}: unknown status {job.status!r}; use one of {', '.join(STATUSES)}")


class JobStore(abc.ABC):
    """Durable job state shared by the request handlers and the :class:`JobRunner` workers."""

    def __init__(self) -> None:
        self._work = asyncio.Event()

    @abc.abstractmethod
    async def reserve_id(self, job_id: str, ttl_s: int) -> bool:
        """Record a sync task's id for ``ttl_s``; False if a job or a reservation used it before."""

    async def submit(self, job: Job) -> bool:
        """Store a new job durably before returning; False if the id was used before."""
        _check_submittable(job)
        stored = await self._store(job)
        if stored and job.status == "queued":
            self._signal_work()
        return stored

    @abc.abstractmethod
    async def _store(self, job: Job) -> bool: ...

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    async def claim(self, worker_id: str, lease_s: float) -> Job | None:
        """Lease the oldest claimable job to ``worker_id``: a queued one, or one whose lease expired."""

    @abc.abstractmethod
    async def extend(self, job_id: str, worker_id: str, lease_s: float) -> bool:
        """Renew a lease ``worker_id`` holds, on a running job or on a pending notification."""

    async def release(self, job_id: str, worker_id: str) -> bool:
        """Give a leased job back to the queue (graceful shutdown): it keeps its place and attempt count."""
        released = await self._release(job_id, worker_id)
        if released:
            self._signal_work()
        return released

    @abc.abstractmethod
    async def _release(self, job_id: str, worker_id: str) -> bool: ...

    @abc.abstractmethod
    async def finish(self, job_id: str, worker_id: str, status: Literal["completed", "failed"],
                     body: dict[str, Any], *, notify_lease_s: float | None = None) -> bool:
        """Store the result or error only if ``worker_id`` still holds the lease of a processing job.

        With ``notify_lease_s`` the job also becomes a pending notification leased to ``worker_id``
        for that long (see ``claim_notification``).
        """

    @abc.abstractmethod
    async def claim_notification(self, worker_id: str, lease_s: float) -> Job | None:
        """Lease a finished job whose notification is pending and whose notifier died (lease expired)."""

    @abc.abstractmethod
    async def notified(self, job_id: str, worker_id: str) -> bool:
        """The notification of a finished job was sent: nothing is pending on it any more."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> bool:
        """queued -> cancelled; False for a job that is missing, running or finished."""

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """Jobs per status, every status present (the queue-depth metric)."""

    @abc.abstractmethod
    async def sweep(self) -> int:
        """Delete finished jobs and reservations whose ttl has passed; returns how many."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    def _signal_work(self) -> None:
        """Wake this process's idle workers at once (other replicas find the job on their next poll)."""
        self._work.set()

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep until a job is submitted in this process, or ``timeout`` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()


# --- SQLite -------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- FIFO order
    id TEXT NOT NULL UNIQUE,
    protocol TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    webhook_url TEXT,
    ttl_s INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,                            -- holds the lease (running, or notifying once finished)
    lease_until REAL,
    expires_at REAL,                        -- set when the job reaches a terminal status
    notify TEXT                             -- 'pending' from finish until notified, then 'done'
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs(lease_until) WHERE status = 'processing';
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_notify ON jobs(lease_until) WHERE notify = 'pending';
CREATE TABLE IF NOT EXISTS reservations (id TEXT PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID;
"""


class SQLiteJobStore(JobStore):
    """One SQLite file (WAL, synchronous=FULL: a commit is fsync'd before ``submit`` returns).

    All statements run on one private thread, so the event loop never waits on the disk and the
    connection is never shared between threads. Several processes may open the same file: each
    write is one ``BEGIN IMMEDIATE`` transaction, and a claim is a single guarded UPDATE.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        super().__init__()
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rmbg-jobs-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._executor.submit(self._db).result()  # a bad path or a locked file fails at start-up, not later

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            with self._write(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            self._conn = conn
        return self._conn

    @staticmethod
    @contextlib.contextmanager
    def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _id_used(self, conn: sqlite3.Connection, job_id: str, now: float) -> bool:
        return bool(conn.execute(
            "SELECT 1 FROM jobs WHERE id = ? UNION ALL SELECT 1 FROM reservations WHERE id = ? AND expires_at > ?",
            (job_id, job_id, now)).fetchone())

    def _reserve(self, job_id: str, ttl_s: int) -> bool:
        now = time.time()
        with self._write(self._db()) as conn:
            if self._id_used(conn, job_id, now):
                return False
            conn.execute("INSERT OR REPLACE INTO reservations (id, expires_at) VALUES (?, ?)", (job_id, now + ttl_s))
            return True

    async def reserve_id(self, job_id: str, ttl_s: int) -> bool:
        return await self._run(self._reserve, job_id, ttl_s)

    def _insert(self, job: Job) -> bool:
        values = _encode(job)
        values["expires_at"] = job.updated_at + job.ttl_s if job.status in TERMINAL else None
        with self._write(self._db()) as conn:
            if self._id_used(conn, job.id, time.time()):
                return False
            names = ", ".join(values)
            conn.execute(f"INSERT INTO jobs ({names}) VALUES ({', '.join('?' * len(values))})", tuple(values.values()))
            return True

    async def _store(self, job: Job) -> bool:
        return await self._run(self._insert, job)

    def _get(self, job_id: str) -> Job | None:
        row = self._db().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _decode(dict(row)) if row else None

    async def get(self, job_id: str) -> Job | None:
        return await self._run(self._get, job_id)

    def _claim(self, worker_id: str, lease_s: float) -> Job | None:
        now = time.time()
        with self._write(self._db()) as conn:
            row = conn.execute(
                "SELECT seq FROM jobs WHERE status = 'processing' AND lease_until < ? ORDER BY lease_until LIMIT 1",
                (now,)).fetchone() or conn.execute(
                "SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            claimed = conn.execute(
                "UPDATE jobs SET status = 'processing', worker = ?, lease_until = ?, updated_at = ?, "
                "attempts = attempts + 1 WHERE seq = ? RETURNING *", (worker_id, now + lease_s, now, row[0])).fetchone()
            return _decode(dict(claimed))

    async def claim(self, worker_id: str, lease_s: float) -> Job | None:
        return await self._run(self._claim, worker_id, lease_s)

    def _claim_notification(self, worker_id: str, lease_s: float) -> Job | None:
        now = time.time()
        with self._write(self._db()) as conn:
            claimed = conn.execute(
                "UPDATE jobs SET worker = ?, lease_until = ? WHERE seq = (SELECT seq FROM jobs "
                "WHERE notify = 'pending' AND lease_until < ? ORDER BY lease_until LIMIT 1) RETURNING *",
                (worker_id, now + lease_s, now)).fetchone()
            return _decode(dict(claimed)) if claimed else None

    async def claim_notification(self, worker_id: str, lease_s: float) -> Job | None:
        return await self._run(self._claim_notification, worker_id, lease_s)

    def _update(self, job_id: str, worker_id: str, assignments: str, args: tuple[Any, ...],
                state: str = "status = 'processing'") -> bool:
        with self._write(self._db()) as conn:
            cur = conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ? AND worker = ? AND {state}",
                               (*args, job_id, worker_id))
            return cur.rowcount == 1

    async def extend(self, job_id: str, worker_id: str, lease_s: float) -> bool:
        return await self._run(self._update, job_id, worker_id, "lease_until = ?", (time.time() + lease_s,),
                               "(status = 'processing' OR notify = 'pending')")

    async def notified(self, job_id: str, worker_id: str) -> bool:
        return await self._run(self._update, job_id, worker_id, "notify = 'done', worker = NULL, lease_until = NULL",
                               (), "notify = 'pending'")

    async def _release(self, job_id: str, worker_id: str) -> bool:
        return await self._run(
            self._update, job_id, worker_id,
            "status = 'queued', worker = NULL, lease_until = NULL, attempts = max(attempts - 1, 0), updated_at = ?",
            (time.time(),))

    async def finish(self, job_id: str, worker_id: str, status: Literal["completed", "failed"],
                     body: dict[str, Any], *, notify_lease_s: float | None = None) -> bool:
        column = _finish_column(status)
        now = time.time()
        lease = ("worker = worker, lease_until = ?, notify = 'pending'", (now + notify_lease_s,)) \
            if notify_lease_s is not None else ("worker = NULL, lease_until = NULL", ())
        return await self._run(
            self._update, job_id, worker_id,
            f"status = ?, {column} = ?, updated_at = ?, expires_at = ? + ttl_s, {lease[0]}",
            (status, json.dumps(body, separators=(",", ":")), now, now, *lease[1]))

    def _cancel(self, job_id: str) -> bool:
        now = time.time()
        with self._write(self._db()) as conn:
            cur = conn.execute("UPDATE jobs SET status = 'cancelled', updated_at = ?, expires_at = ? + ttl_s "
                               "WHERE id = ? AND status = 'queued'", (now, now, job_id))
            return cur.rowcount == 1

    async def cancel(self, job_id: str) -> bool:
        return await self._run(self._cancel, job_id)

    def _counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._db().execute("SELECT status, count(*) FROM jobs GROUP BY status"):
            counts[status] = n
        return counts

    async def counts(self) -> dict[str, int]:
        return await self._run(self._counts)

    def _sweep(self) -> int:
        now = time.time()
        with self._write(self._db()) as conn:
            jobs = conn.execute("DELETE FROM jobs WHERE expires_at < ?", (now,)).rowcount
            reservations = conn.execute("DELETE FROM reservations WHERE expires_at < ?", (now,)).rowcount
            return jobs + reservations

    async def sweep(self) -> int:
        return await self._run(self._sweep)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)


def _finish_column(status: str) -> str:
    if status not in ("completed", "failed"):
        raise ValueError(f"a job finishes 'completed' or 'failed', not {status!r}")
    return "result" if status == "completed" else "error"


# --- Redis --------------------------------------------------------------------------------------
# Every transition is one Lua script, so it is atomic across replicas; leases and expiries use the
# Redis server's clock (TIME), so replicas with skewed clocks agree on when a lease ran out.
# Keys share the {rmbg} hash tag: one slot, so the scripts also run on a Redis Cluster.

_LUA_NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

_LUA_RESERVE = _LUA_NOW + """
local p, id = KEYS[1], ARGV[1]
if redis.call('EXISTS', p .. 'job:' .. id) == 1 then return 0 end
if redis.call('SET', p .. 'rsv:' .. id, '1', 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""

_LUA_SUBMIT = _LUA_NOW + """
local p, id, status, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = p .. 'job:' .. id
if redis.call('EXISTS', key) == 1 or redis.call('EXISTS', p .. 'rsv:' .. id) == 1 then return 0 end
redis.call('HSET', key, unpack(ARGV, 4))
if status == 'queued' then
  local seq = redis.call('INCR', p .. 'seq')
  redis.call('HSET', key, 'seq', seq)
  redis.call('ZADD', p .. 'queue', seq, id)
else
  local expires = tonumber(redis.call('HGET', key, 'updated_at')) + ttl
  redis.call('HSET', key, 'expires_at', tostring(expires))
  redis.call('ZADD', p .. 'done:' .. status, expires, id)
end
return 1
"""

_LUA_CLAIM = _LUA_NOW + """
local p, worker, lease = KEYS[1], ARGV[1], tonumber(ARGV[2])
local id
local expired = redis.call('ZRANGEBYSCORE', p .. 'leases', '-inf', '(' .. now, 'LIMIT', 0, 1)
if #expired > 0 then
  id = expired[1]
else
  local head = redis.call('ZRANGE', p .. 'queue', 0, 0)
  if #head == 0 then return false end
  id = head[1]
  redis.call('ZREM', p .. 'queue', id)
end
local key = p .. 'job:' .. id
if redis.call('EXISTS', key) == 0 then
  redis.call('ZREM', p .. 'leases', id)
  return false
end
redis.call('HSET', key, 'status', 'processing', 'worker', worker, 'lease_until', tostring(now + lease),
           'updated_at', tostring(now))
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('ZADD', p .. 'leases', now + lease, id)
return redis.call('HGETALL', key)
"""

_LUA_CLAIM_NOTIFICATION = _LUA_NOW + """
local p, worker, lease = KEYS[1], ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', p .. 'notify', '-inf', '(' .. now, 'LIMIT', 0, 1)
if #due == 0 then return false end
local id = due[1]
local key = p .. 'job:' .. id
if redis.call('EXISTS', key) == 0 then
  redis.call('ZREM', p .. 'notify', id)
  return false
end
redis.call('HSET', key, 'worker', worker, 'lease_until', tostring(now + lease))
redis.call('ZADD', p .. 'notify', now + lease, id)
return redis.call('HGETALL', key)
"""

# KEYS[1] prefix; ARGV: id, worker, action, then the action's arguments.
_LUA_LEASED = _LUA_NOW + """
local p, id, worker, action = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'job:' .. id
if redis.call('HGET', key, 'worker') ~= worker then return 0 end
local status, notify = redis.call('HGET', key, 'status'), redis.call('HGET', key, 'notify')
if action == 'extend' then
  local until_ = now + tonumber(ARGV[4])
  if status == 'processing' then
    redis.call('ZADD', p .. 'leases', until_, id)
  elseif notify == 'pending' then
    redis.call('ZADD', p .. 'notify', until_, id)
  else
    return 0
  end
  redis.call('HSET', key, 'lease_until', tostring(until_))
  return 1
end
if action == 'notified' then
  if notify ~= 'pending' then return 0 end
  redis.call('ZREM', p .. 'notify', id)
  redis.call('HDEL', key, 'worker', 'lease_until')
  redis.call('HSET', key, 'notify', 'done')
  return 1
end
if status ~= 'processing' then return 0 end
redis.call('ZREM', p .. 'leases', id)
redis.call('HDEL', key, 'worker', 'lease_until')
if action == 'release' then
  local attempts = math.max(tonumber(redis.call('HGET', key, 'attempts')) - 1, 0)
  redis.call('HSET', key, 'status', 'queued', 'attempts', attempts, 'updated_at', tostring(now))
  redis.call('ZADD', p .. 'queue', tonumber(redis.call('HGET', key, 'seq')), id)
  return 1
end
local column, body, notify_lease = ARGV[5], ARGV[6], tonumber(ARGV[7])
status = ARGV[4]
local expires = now + tonumber(redis.call('HGET', key, 'ttl_s'))
redis.call('HSET', key, 'status', status, column, body, 'updated_at', tostring(now), 'expires_at', tostring(expires))
redis.call('ZADD', p .. 'done:' .. status, expires, id)
if notify_lease >= 0 then
  redis.call('HSET', key, 'worker', worker, 'lease_until', tostring(now + notify_lease), 'notify', 'pending')
  redis.call('ZADD', p .. 'notify', now + notify_lease, id)
end
return 1
"""

_LUA_CANCEL = _LUA_NOW + """
local p, id = KEYS[1], ARGV[1]
local key = p .. 'job:' .. id
if redis.call('HGET', key, 'status') ~= 'queued' then return 0 end
local expires = now + tonumber(redis.call('HGET', key, 'ttl_s'))
redis.call('ZREM', p .. 'queue', id)
redis.call('HSET', key, 'status', 'cancelled', 'updated_at', tostring(now), 'expires_at', tostring(expires))
redis.call('ZADD', p .. 'done:cancelled', expires, id)
return 1
"""

_LUA_SWEEP = _LUA_NOW + """
local p, n = KEYS[1], 0
for _, status in ipairs({'completed', 'failed', 'cancelled'}) do
  local done = p .. 'done:' .. status
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', done, '-inf', '(' .. now)) do
    redis.call('DEL', p .. 'job:' .. id)
    redis.call('ZREM', p .. 'notify', id)
    n = n + 1
  end
  redis.call('ZREMRANGEBYSCORE', done, '-inf', '(' .. now)
end
return n
"""

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
        self._scripts = {name: self._redis.register_script(src) for name, src in (
            ("reserve", _LUA_RESERVE), ("submit", _LUA_SUBMIT), ("claim", _LUA_CLAIM), ("leased", _LUA_LEASED),
            ("claim_notification", _LUA_CLAIM_NOTIFICATION),
            ("cancel", _LUA_CANCEL), ("sweep", _LUA_SWEEP))}

    async def _call(self, script: str, *args: Any) -> Any:
        return await self._scripts[script](keys=[self.prefix], args=list(args))

    async def reserve_id(self, job_id: str, ttl_s: int) -> bool:
        return bool(await self._call("reserve", job_id, max(int(ttl_s), 1)))

    async def _store(self, job: Job) -> bool:
        pairs = [x for name, value in _encode(job).items() if value is not None for x in (name, str(value))]
        return bool(await self._call("submit", job.id, job.status, job.ttl_s, *pairs))

    async def get(self, job_id: str) -> Job | None:
        row = await self._redis.hgetall(f"{self.prefix}job:{job_id}")
        return _decode(row) if row else None

    async def _claim(self, script: str, worker_id: str, lease_s: float) -> Job | None:
        flat = await self._call(script, worker_id, lease_s)
        return _decode(dict(zip(flat[::2], flat[1::2], strict=True))) if flat else None

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
        column = _finish_column(status)
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


def open_job_store(data_dir: Path, redis_url: str | None = None) -> JobStore:
    """SQLite in ``data_dir`` (the embedded default), or Redis when replicas share ``redis_url``."""
    if redis_url:
        return RedisJobStore(redis_url)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return SQLiteJobStore(data_dir / "jobs.sqlite3")


# --- Runner -------------------------------------------------------------------------------------

Handler = Callable[[Job], Awaitable[tuple[str, dict[str, Any]]]]


class JobRunner:
    """Runs stored jobs with ``concurrency`` workers, holding a lease on each while it runs.

    A handler exception fails only its job. A job whose workers died ``max_attempts`` times (a
    crash the handler cannot catch) is failed instead of being retried forever. On ``stop`` the
    running jobs get ``grace_s`` to finish; the rest are released to the queue for any replica.
    ``on_finished`` runs after each finish under a notification lease: if this process dies before
    it returned, another runner (here or on a replica) runs it once the lease expires.
    Every ``sweep_s`` seconds the runner sweeps the store and each of ``also_sweep`` (e.g. the
    file store), so one loop per replica keeps expired results and files from piling up.
    """

    def __init__(self, store: JobStore, handler: Handler, *, concurrency: int = 4, lease_s: float = 30.0,
                 poll_s: float = 0.2, on_finished: Callable[[Job], Awaitable[None]] | None = None,
                 max_attempts: int = 3, grace_s: float = 10.0, sweep_s: float | None = 60.0,
                 also_sweep: Sequence[Callable[[], Awaitable[int]]] = ()) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if lease_s <= 0 or poll_s <= 0:
            raise ValueError(f"lease_s and poll_s must be positive, got {lease_s} and {poll_s}")
        self.store = store
        self.handler = handler
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.on_finished = on_finished
        self.max_attempts = max_attempts
        self.grace_s = grace_s
        self.sweep_s = sweep_s
        self.also_sweep = tuple(also_sweep)
        self.runner_id = f"{uuid.uuid4().hex[:12]}"
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        if self._loops:
            return
        self._stopping.clear()
        self._loops = [asyncio.create_task(self._worker(f"{self.runner_id}:{i}"), name=f"rmbg-job-worker-{i}")
                       for i in range(self.concurrency)]
        if self.sweep_s:
            self._loops.append(asyncio.create_task(self._sweeper(), name="rmbg-job-sweeper"))
        if self.on_finished is not None:
            self._loops.append(asyncio.create_task(self._orphaned_notifications(), name="rmbg-job-notifier"))

    async def stop(self) -> None:
        self._stopping.set()
        self.store._signal_work()
        loops, self._loops = self._loops, []
        await asyncio.gather(*loops, return_exceptions=True)
        if self._background:
            _, pending = await asyncio.wait(self._background, timeout=self.grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _worker(self, worker_id: str) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                job = await self.store.claim(worker_id, self.lease_s)
                failures = 0
            except Exception:  # the store is unreachable: keep the worker, back off
                failures += 1
                log.exception("claiming a job failed (%d in a row); retrying", failures)
                await self._sleep(min(self.poll_s * 2 ** failures, 5.0))
                continue
            if job is None:  # stop() signals work too, so an idle worker notices it at once
                await self.store.wait_for_work(self.poll_s)
                continue
            await self._run(job, worker_id)

    async def _run(self, job: Job, worker_id: str) -> None:
        if job.attempts > self.max_attempts:
            log.error("job %s was abandoned by %d workers; failing it", job.id, job.attempts - 1)
            await self._finish(job, worker_id, "failed", {
                "code": "internal", "message": f"the job stopped its worker {job.attempts - 1} times; not retried"})
            return
        work = asyncio.create_task(self._call_handler(job))
        keeper = asyncio.create_task(self._keep_lease(job, worker_id, work))
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if work not in done:  # stopping: give the job grace_s, then hand it back
                done, _ = await asyncio.wait({work}, timeout=self.grace_s)
            if work not in done:
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                with contextlib.suppress(Exception):
                    await self.store.release(job.id, worker_id)
                log.info("job %s released to the queue on shutdown", job.id)
                return
            if work.cancelled():  # the lease was lost to another worker: its result is not ours to store
                return
            status, body = work.result()
        finally:
            for task in (keeper, stopping):
                task.cancel()
            await asyncio.gather(keeper, stopping, return_exceptions=True)
        await self._finish(job, worker_id, status, body)

    async def _call_handler(self, job: Job) -> tuple[str, dict[str, Any]]:
        try:
            status, body = await self.handler(job)
            if status not in ("completed", "failed") or not isinstance(body, dict):
                raise TypeError(f"a job handler returns ('completed'|'failed', dict), got ({status!r}, "
                                f"{type(body).__name__})")
            return status, body
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("job %s failed in its handler", job.id)
            return "failed", {"code": "internal", "message": f"{type(e).__name__}: {e}"}

    async def _keep_lease(self, job: Job, worker_id: str, work: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                held = await self.store.extend(job.id, worker_id, self.lease_s)
            except Exception:
                log.exception("extending the lease of job %s failed; retrying", job.id)
                continue
            if not held:
                log.warning("job %s: lease lost to another worker; abandoning this run", job.id)
                work.cancel()
                return

    @contextlib.asynccontextmanager
    async def _leased(self, job: Job, worker_id: str) -> Any:
        """Keep the lease of ``job`` while the block runs in the current task."""
        keeper = asyncio.create_task(self._keep_lease(job, worker_id, asyncio.current_task()))  # type: ignore[arg-type]
        try:
            yield
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)

    async def _finish(self, job: Job, worker_id: str, status: str, body: dict[str, Any]) -> None:
        for attempt in range(5):
            try:
                finished = await self.store.finish(  # type: ignore[arg-type]
                    job.id, worker_id, status, body, notify_lease_s=None if self.on_finished is None else self.lease_s)
                break
            except Exception:
                log.exception("storing the result of job %s failed (try %d)", job.id, attempt + 1)
                await asyncio.sleep(min(0.2 * 2 ** attempt, 2.0))
        else:
            return  # the lease runs out and another worker runs the job again
        if not finished:
            log.warning("job %s: result not stored, the lease was lost to another worker", job.id)
            return
        if self.on_finished is not None:
            done = replace(job, status=status, updated_at=time.time(),  # type: ignore[arg-type]
                           result=body if status == "completed" else None, error=body if status == "failed" else None)
            self._spawn(self._notify(done, worker_id))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notify(self, job: Job, worker_id: str) -> None:
        """on_finished under the notification lease; cancelled (shutdown, lease lost): left to another runner."""
        async with self._leased(job, worker_id):
            try:
                await self.on_finished(job)  # type: ignore[misc]
            except Exception:  # a bug in on_finished: retrying would repeat it, so it counts as done
                log.exception("on_finished for job %s failed", job.id)
        try:
            await self.store.notified(job.id, worker_id)
        except Exception:
            log.exception("marking job %s notified failed; it may be notified again", job.id)

    async def _orphaned_notifications(self) -> None:
        """Run on_finished for jobs whose finishing worker died before it did (notification lease expired)."""
        worker_id = f"{self.runner_id}:notify"
        while not self._stopping.is_set():
            try:
                job = await self.store.claim_notification(worker_id, self.lease_s)
            except Exception:
                log.exception("claiming a pending notification failed; retrying")
                job = None
            if job is None:
                await self._sleep(max(self.poll_s, self.lease_s / 4))
                continue
            log.info("job %s: notifying for a worker that died after finishing it", job.id)
            self._spawn(self._notify(job, worker_id))

    async def _sweeper(self) -> None:
        while not self._stopping.is_set():
            for sweep in (self.store.sweep, *self.also_sweep):
                try:
                    if n := await sweep():
                        log.info("swept %d expired entries", n)
                except Exception:
                    log.exception("sweeping failed; retrying in %.0f s", self.sweep_s)
            await self._sleep(self.sweep_s or 60.0)
