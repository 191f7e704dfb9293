"""The gateway's state: settings, stores, the Triton pool, limits, jobs and webhooks, shared by every router.

One ``Gateway`` per app (``app.state.gateway``). Routers reach it with ``gateway(request)`` and run
requests through ``GatewayPorts`` (``ports.py``), bound to the caller's tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterator
from typing import Any, Protocol

from fastapi import Request

from rmbg_hosted.errors import BusyError, RmbgError, ServerUnavailableError
from rmbg_hosted.retry import async_retrying
from rmbg_hosted.webhooks import post_webhook
from rmbg_server.gateway.auth import KeyRing
from rmbg_server.gateway.files import open_file_store
from rmbg_server.gateway.jobs import Job, JobRunner, open_job_store
from rmbg_server.gateway.jobs.store import QueueFull
from rmbg_server.gateway.metrics import Metrics
from rmbg_server.gateway.ports import GatewayPorts
from rmbg_server.gateway.sessions import Sessions
from rmbg_server.gateway.settings import GatewaySettings
from rmbg_server.gateway.triton import TritonPool

log = logging.getLogger(__name__)


class JobProtocol(Protocol):
    """What a protocol with queued work provides (its router module): how a stored job runs, and its bodies."""

    PROTOCOL: str

    async def run_job(self, job: Job, ports: GatewayPorts) -> dict[str, Any]:
        """The result body; raises RmbgError (an outage is waited out by the caller)."""

    def failure_body(self, job: Job, error: RmbgError) -> dict[str, Any]:
        """The protocol's error body for a failed job."""

    def webhook_body(self, job: Job) -> dict[str, Any]:
        """What the job's webhook receives once it finished."""


def _outage(error: BaseException) -> bool:
    return isinstance(error, ServerUnavailableError)


class Gateway:
    def __init__(self, settings: GatewaySettings, protocols: dict[str, JobProtocol]) -> None:
        self.settings = settings
        self.protocols = protocols
        self.metrics = Metrics()
        self.keys = KeyRing(settings.api_keys, settings.rate_limit, settings.burst)
        self.pool = TritonPool(settings.triton, timeout_s=settings.triton_timeout)
        self.aliases = settings.model_aliases
        self.policy, self.callback_policy = settings.fetch_policy, settings.callback_policy
        self.signing_key = b""
        self.sessions = Sessions(settings.ws_session_ttl)
        self.inflight = 0
        self._background: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_job_store(s.data_dir, s.redis)
        self.files = open_file_store(s.data_dir, s.redis)
        self.signing_key = s.files_secret.encode() if s.files_secret else await self.files.secret()
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
        """Store a job (durably, before it is acknowledged) unless the queue is full (BusyError).

        The bound is checked and the job inserted in one store transaction (``JobStore.submit``).
        """
        try:
            return await self.store.submit(job, max_queued=self.settings.max_queued)
        except QueueFull as exc:
            raise self.busy("queue", f"{exc.queued} jobs are queued, the limit is {self.settings.max_queued}") from None

    # -- jobs and webhooks ------------------------------------------------------------------
    async def run_job(self, job: Job) -> tuple[str, dict[str, Any]]:
        """The JobRunner's handler: the job's protocol runs it for the job's tenant.

        An accepted job waits an inference outage out (retried with backoff up to 10 s apart, for up
        to ``--outage-wait`` seconds): only a model that was never configured fails it.
        """
        ports = GatewayPorts(self, tenant=job.tenant)

        def log_wait(state: Any) -> None:
            log.warning("job %s waits for the inference service (%s); try %d", job.id, state.outcome.exception(),
                        state.attempt_number)

        waiting = async_retrying(None, 1.0, 10.0, on_error=_outage, log=log_wait,
                                 deadline_s=self.settings.outage_wait)
        protocol = self.protocols[job.protocol]
        try:
            return "completed", await waiting(protocol.run_job, job, ports)
        except RmbgError as exc:
            return "failed", protocol.failure_body(job, exc)

    async def deliver(self, url: str, body: dict[str, Any]) -> None:
        ok = await post_webhook(url, body, secret=self.settings.webhook_secret, policy=self.callback_policy)
        (self.metrics.webhooks if ok else self.metrics.webhook_failures).inc()

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def job_finished(self, job: Job) -> None:
        self.metrics.tasks.labels(job.protocol, job.status).inc()
        for blob in job.blobs:  # its stored inputs: nothing will read them again
            await self.files.delete(blob)
        if job.webhook_url:
            await self.deliver(job.webhook_url, self.protocols[job.protocol].webhook_body(job))

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


def tenant_of(request: Request) -> str | None:
    """The caller's tenant: its API key's id, set by the middleware (None without keys)."""
    return request.scope.get("state", {}).get("tenant")


def ports_of(request: Request) -> GatewayPorts:
    """The flow's ports for this request's tenant."""
    return GatewayPorts(gateway(request), tenant_of(request))
