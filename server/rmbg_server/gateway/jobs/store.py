"""The job store's interface: the state machine every backend (SQLite, Redis) implements.

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
from typing import Any, Literal

from rmbg_server.gateway.jobs.model import Job, check_submittable


class QueueFull(Exception):
    """The queue holds ``queued`` jobs, the bound a submit was given."""

    def __init__(self, queued: int) -> None:
        super().__init__(f"{queued} jobs are queued")
        self.queued = queued


class JobStore(abc.ABC):
    """Durable job state shared by the request handlers and the :class:`JobRunner` workers."""

    def __init__(self) -> None:
        self._work = asyncio.Event()

    @abc.abstractmethod
    async def reserve_id(self, job_id: str, ttl_s: int) -> bool:
        """Record a sync task's id for ``ttl_s``; False if a job or a reservation used it before."""

    @abc.abstractmethod
    async def release_id(self, job_id: str) -> None:
        """Forget a reservation (its task failed and produced nothing, so the id may be sent again)."""

    async def submit(self, job: Job, max_queued: int | None = None) -> bool:
        """Store a new job durably before returning; False if the id was used before.

        With ``max_queued``, a queued job is stored only while fewer jobs are queued, checked and
        inserted in one transaction (one Lua script on Redis), so concurrent submits on any number
        of replicas never overshoot the bound; beyond it, QueueFull.
        """
        check_submittable(job)
        stored = await self._store(job, max_queued)
        if stored and job.status == "queued":
            self._signal_work()
        return stored

    @abc.abstractmethod
    async def _store(self, job: Job, max_queued: int | None) -> bool: ...

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
