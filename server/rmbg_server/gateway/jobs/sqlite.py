"""The embedded job store: one SQLite file in ``--data-dir``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from rmbg_server.gateway.jobs.model import STATUSES, TERMINAL, Job, decode_job, encode_job, finish_column
from rmbg_server.gateway.jobs.store import JobStore, QueueFull

T = TypeVar("T")

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
    tenant TEXT,                            -- the API key's id, NULL without keys
    blobs TEXT,                             -- JSON list of stored inputs
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


_ADDED_COLUMNS = (("tenant", "TEXT"), ("blobs", "TEXT"))


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
                columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
                for column, kind in _ADDED_COLUMNS:  # a database written by an older gateway
                    if column not in columns:
                        conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
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

    def _release_id(self, job_id: str) -> None:
        with self._write(self._db()) as conn:
            conn.execute("DELETE FROM reservations WHERE id = ?", (job_id,))

    async def release_id(self, job_id: str) -> None:
        await self._run(self._release_id, job_id)

    def _insert(self, job: Job, max_queued: int | None) -> bool:
        values = encode_job(job)
        values["expires_at"] = job.updated_at + job.ttl_s if job.status in TERMINAL else None
        with self._write(self._db()) as conn:
            if self._id_used(conn, job.id, time.time()):
                return False
            if max_queued is not None and job.status == "queued":
                queued = conn.execute("SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
                if queued >= max_queued:
                    raise QueueFull(queued)
            names = ", ".join(values)
            conn.execute(f"INSERT INTO jobs ({names}) VALUES ({', '.join('?' * len(values))})", tuple(values.values()))
            return True

    async def _store(self, job: Job, max_queued: int | None) -> bool:
        return await self._run(self._insert, job, max_queued)

    def _get(self, job_id: str) -> Job | None:
        row = self._db().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return decode_job(dict(row)) if row else None

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
            return decode_job(dict(claimed))

    async def claim(self, worker_id: str, lease_s: float) -> Job | None:
        return await self._run(self._claim, worker_id, lease_s)

    def _claim_notification(self, worker_id: str, lease_s: float) -> Job | None:
        now = time.time()
        with self._write(self._db()) as conn:
            claimed = conn.execute(
                "UPDATE jobs SET worker = ?, lease_until = ? WHERE seq = (SELECT seq FROM jobs "
                "WHERE notify = 'pending' AND lease_until < ? ORDER BY lease_until LIMIT 1) RETURNING *",
                (worker_id, now + lease_s, now)).fetchone()
            return decode_job(dict(claimed)) if claimed else None

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
        column = finish_column(status)
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
