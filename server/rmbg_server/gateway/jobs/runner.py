"""Runs stored jobs: leases, renewals, exactly-once completion, durable notifications, sweeping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from rmbg_hosted.retry import async_retrying
from rmbg_server.gateway.jobs.model import Job
from rmbg_server.gateway.jobs.store import JobStore

log = logging.getLogger(__name__)

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

    def _store_retry(self, attempts: int | None, what: str) -> Any:
        """The store is unreachable: back off (until stop() for ``attempts`` None), then give up."""
        def log_retry(state: Any) -> None:
            log.warning("%s failed (%s, try %d); retrying", what, state.outcome.exception(), state.attempt_number)
        return async_retrying(attempts, self.poll_s, 5.0, log=log_retry, sleep=self._sleep,
                              on_error=lambda e: isinstance(e, Exception) and not self._stopping.is_set())

    async def _worker(self, worker_id: str) -> None:
        claim = self._store_retry(None, "claiming a job")
        while not self._stopping.is_set():
            try:
                job = await claim(self.store.claim, worker_id, self.lease_s)
            except Exception:  # noqa: BLE001 - only while stopping: the retry gives up then
                return
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
        notify_lease_s = None if self.on_finished is None else self.lease_s
        try:
            finished = await self._store_retry(5, f"storing the result of job {job.id}")(
                self.store.finish, job.id, worker_id, status, body, notify_lease_s=notify_lease_s)
        except Exception:  # noqa: BLE001 - the lease runs out and another worker runs the job again
            log.exception("the result of job %s could not be stored", job.id)
            return
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
