"""The gateway's side of the hosted-API flow: inference on the Triton pool, hosted files, the job store.

``GatewayPorts`` is built per request, for the caller's tenant, and handed to ``rmbg_hosted``'s
flow (``run_task``) and task dispatch (``execute_task``). Every protocol's router uses it, so a
removal runs the same way whatever API it came in by.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from rmbg_backend.contract import ensemble_name
from rmbg_backend.options import Options
from rmbg_hosted.aliases import DEFAULT_MODEL, family_of
from rmbg_hosted.errors import InvalidInputError, NotFoundError, RmbgError, ServerUnavailableError
from rmbg_hosted.fetch import FetchError, FetchPolicy
from rmbg_hosted.flow import Inference, Removal, check
from rmbg_hosted.tasks import RemoveBackgroundTask, duplicate
from rmbg_server.gateway.files import FileStore
from rmbg_server.gateway.jobs import Job, JobStore
from rmbg_server.gateway.metrics import Metrics
from rmbg_server.gateway.settings import GatewaySettings
from rmbg_server.gateway.triton import TritonPool

log = logging.getLogger(__name__)


class Services(Protocol):
    """What the ports use of the app's state (``state.Gateway``)."""

    settings: GatewaySettings
    metrics: Metrics
    pool: TritonPool
    store: JobStore
    files: FileStore
    aliases: dict[str, str]
    policy: FetchPolicy

    async def submit(self, job: Job) -> bool: ...

    async def deliver(self, url: str, body: dict[str, Any]) -> None: ...

    def spawn(self, work: Awaitable[Any]) -> None: ...


class GatewayPorts:
    """``TaskPorts`` for one request of one tenant."""

    hosts_files = True
    default_model = DEFAULT_MODEL

    def __init__(self, services: Services, tenant: str | None) -> None:
        self.services, self.tenant = services, tenant
        self.settings = services.settings
        self.policy = services.policy
        self.cost_per_image = services.settings.cost_per_image

    # -- the flow's ports -------------------------------------------------------------------
    def family(self, name: str, parameter: str | None) -> str:
        """An alias -> a family Triton serves. A model that is not served now is an outage when any
        endpoint ever served it, or when no endpoint answers; only a model never seen is the caller's."""
        family = family_of(name, self.services.aliases, parameter=parameter)
        pool = self.services.pool
        if family in pool.served_models():
            return family
        if family in pool.known_models() or not pool.healthy():
            raise ServerUnavailableError(f"{ensemble_name(family)} is not available right now (no healthy Triton "
                                         "endpoint serves it); retry shortly")
        loaded = ", ".join(sorted(pool.served_models())) or "none"
        raise InvalidInputError(f"model {name!r} needs {ensemble_name(family)}, which is not loaded; loaded: {loaded}. "
                                f"Build it (rmbg build-repo --model {family}) or serve this name with a loaded model "
                                f"(--alias {name}=MODEL)", code="modelNotLoaded", parameter=parameter)

    async def infer(self, family: str, image: bytes, options: Options, background: bytes | None) -> Inference:
        with self.services.metrics.inference.labels(family).time():
            return await self.services.pool.remove(family, image, options, background)

    async def host(self, image_uuid: str, data: bytes, content_type: str, ttl_s: int | None) -> str:
        stored = await self.services.files.put(image_uuid, data, content_type, ttl_s or self.settings.ttl)
        return f"{self.settings.base_url}/files/{stored.name}"

    async def lookup(self, image_uuid: str) -> bytes | None:
        found = await self.services.files.find(image_uuid)
        return found[0] if found else None

    async def notify(self, url: str, body: dict[str, Any]) -> None:
        self.services.spawn(self.services.deliver(url, body))  # the caller does not wait for the receiver

    # -- the task array's ports -------------------------------------------------------------
    async def reserve(self, task_uuid: str, ttl_s: int | None) -> bool:
        return await self.services.store.reserve_id(task_uuid, ttl_s or self.settings.ttl)

    async def release(self, task_uuid: str) -> None:
        await self.services.store.release_id(task_uuid)

    async def enqueue(self, task: RemoveBackgroundTask, removal: Removal) -> dict[str, Any]:
        await self.check(removal)
        job = Job(id=task.taskUUID, protocol="task", request=task.model_dump(mode="json", exclude_unset=True),
                  webhook_url=task.webhookURL, ttl_s=task.ttl or self.settings.ttl)
        if not await self.services.submit(job):
            raise duplicate(task.taskUUID)
        return {"taskType": task.taskType, "taskUUID": task.taskUUID, "status": "queued"}

    async def get_response(self, task_uuid: str) -> tuple[bool, dict[str, Any]]:
        job = await self.services.store.get(task_uuid)
        if job is None or job.protocol != "task":
            raise NotFoundError("no async task with this taskUUID here (send removeBackground with deliveryMethod "
                                "async first; results are kept for their ttl)", code="taskNotFound",
                                parameter="taskUUID")
        if job.status == "completed" and job.result is not None:
            return True, {**job.result, "status": "success"}
        if job.status == "failed" and job.error is not None:
            return False, job.error
        if job.status == "cancelled":
            raise InvalidInputError("the task was cancelled", code="taskCancelled", parameter="taskUUID")
        return True, {"taskType": "removeBackground", "taskUUID": task_uuid,
                      "status": "processing" if job.status == "processing" else "queued"}

    def failed(self, error: RmbgError) -> None:
        if isinstance(error, FetchError):
            self.services.metrics.fetch_failures.labels(error.reason).inc()

    # -- queued work ------------------------------------------------------------------------
    async def check(self, removal: Removal) -> None:
        """Refuse now what the queued job would fail on later (``rmbg_hosted.flow.check``)."""
        try:
            await check(removal, self)
        except RmbgError as exc:
            self.failed(exc)
            raise
