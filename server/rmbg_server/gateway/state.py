"""The gateway's state: settings, stores, the Triton pool, limits, jobs and webhooks, shared by every router.

One ``Gateway`` per app (``app.state.gateway``). Routers reach it with ``gateway(request)`` and run
requests through ``GatewayPorts`` (``ports.py``), bound to the caller's tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import Request

from rmbg_hosted.errors import BusyError, ServerUnavailableError
from rmbg_hosted.retry import async_retrying
from rmbg_hosted.webhooks import post_webhook
from rmbg_server.gateway.auth import KeyRing
from rmbg_server.gateway.files import open_file_store
from rmbg_server.gateway.jobs import Job, JobRunner, open_job_store
from rmbg_server.gateway.metrics import Metrics
from rmbg_server.gateway.ports import GatewayPorts
from rmbg_server.gateway.settings import GatewaySettings
from rmbg_server.gateway.triton import TritonPool

log = logging.getLogger(__name__)
# protocol -> how a stored job of that protocol runs: ("completed" | "failed", the protocol's body)
JobHandler = Callable[[Job, Any], Awaitable[tuple[str, dict[str, Any]]]]
# protocol -> the webhook body of a finished job of that protocol
WebhookBody = Callable[[Job], dict[str, Any]]


def _outage(error: BaseException) -> bool:
    return isinstance(error, ServerUnavailableError)


class Gateway:
    def __init__(self, settings: GatewaySettings, handlers: dict[str, JobHandler],
                 webhook_bodies: dict[str, WebhookBody]) -> None:
        self.settings = settings
        self.handlers, self.webhook_bodies = handlers, webhook_bodies
        self.metrics = Metrics()
        self.keys = KeyRing(settings.api_keys, settings.rate_limit, settings.burst)
        self.pool = TritonPool(settings.triton, timeout_s=settings.triton_timeout)
        self.aliases = settings.model_aliases
        self.policy = settings.fetch_policy
        self.inflight = 0
        self._queued = (0.0, 0)  # (when counted, queued jobs)
        self._background: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_job_store(s.data_dir, s.redis)
        self.files = open_file_store(s.data_dir, s.redis)
        await self.pool.start()
        self.runner = JobRunner(self.store, self.run_job, concurrency=s.workers, lease_s=s.job_lease,
                                on_finished=self.job_finished, also_sweep=(self.files.sweep,))
        await self.runner.start()
        log.info("gateway ready on %s; Triton endpoints: %s; models: %s", s.base_url,
                 ", ".join(self.pool.endpoints) or "none", ", ".join(sorted(self.pool.served_models())) or "none")

    async def stop(self) -> None:
        await self.runner.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.pool.stop()
        await self.store.close()
        await self.files.close()

    # -- limits -----------------------------------------------------------------------------
    def busy(self, reason: str, message: str) -> BusyError:
        self.metrics.rejected.labels(reason).inc()
        return BusyError(f"the gateway is at capacity ({message}); retry after {self.settings.retry_after} s",
                         retry_after=self.settings.retry_after)

    @contextlib.contextmanager
    def admit(self, units: int = 1) -> Iterator[None]:
        """Work that runs now: at most ``--max-inflight`` units at once, else BusyError (429)."""
        if units and self.inflight + units > self.settings.max_inflight:
            raise self.busy("inflight", f"{self.inflight} requests in flight, the limit is "
                                        f"{self.settings.max_inflight}")
        self.inflight += units
        self.metrics.inflight.set(self.inflight)
        try:
            yield
        finally:
            self.inflight -= units
            self.metrics.inflight.set(self.inflight)

    async def submit(self, job: Job) -> bool:
        """Store a job (durably, before it is acknowledged) unless the queue is full (BusyError)."""
        when, queued = self._queued
        if time.monotonic() - when > 1.0:
            queued = (await self.store.counts()).get("queued", 0)
            self._queued = (time.monotonic(), queued)
        if queued >= self.settings.max_queued:
            raise self.busy("queue", f"{queued} jobs are queued, the limit is {self.settings.max_queued}")
        self._queued = (self._queued[0], self._queued[1] + 1)
        return await self.store.submit(job)

    # -- jobs and webhooks ------------------------------------------------------------------
    async def run_job(self, job: Job) -> tuple[str, dict[str, Any]]:
        """The JobRunner's handler: the job's protocol runs it; an outage is waited out (bounded backoff)."""
        ports = GatewayPorts(self, tenant=None)
        waiting = async_retrying(6, 2.0, 64.0, on_error=_outage)
        return await waiting(self.handlers[job.protocol], job, ports)

    async def deliver(self, url: str, body: dict[str, Any]) -> None:
        ok = await post_webhook(url, body, secret=self.settings.webhook_secret, policy=self.policy)
        (self.metrics.webhooks if ok else self.metrics.webhook_failures).inc()

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def job_finished(self, job: Job) -> None:
        self.metrics.tasks.labels(job.protocol, job.status).inc()
        if job.webhook_url:
            await self.deliver(job.webhook_url, self.webhook_bodies[job.protocol](job))

    async def render_metrics(self) -> bytes:
        with contextlib.suppress(Exception):  # the store being down must not break /metrics
            counts = await self.store.counts()
            for status, n in counts.items():
                self.metrics.jobs.labels(status).set(n)
        healthy = len(self.pool.healthy())
        self.metrics.endpoints.labels("healthy").set(healthy)
        self.metrics.endpoints.labels("unhealthy").set(len(self.pool.endpoints) - healthy)
        return self.metrics.render()


def gateway(request: Request) -> Gateway:
    """The app's Gateway, for routes (``Depends(gateway)``)."""
    return request.app.state.gateway
