"""The gateway's side of the hosted-API flow: inference on the Triton pool, stored files, the job store.

``GatewayPorts`` is built per request, for the caller's tenant (the API key's id), and handed to
``rmbg_hosted``'s flow (``run_task``) and task dispatch (``execute_task``). Every protocol's router
uses it, so a removal runs the same way whatever API it came in by, and a tenant sees only its own
jobs and files: another tenant's id answers exactly as an id that does not exist (404).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable
from typing import Any, Protocol

from rmbg_backend.contract import ensemble_name
from rmbg_backend.options import Options
from rmbg_hosted.aliases import DEFAULT_MODEL, family_of
from rmbg_hosted.errors import InvalidInputError, NotFoundError, RmbgError, ServerUnavailableError
from rmbg_hosted.fetch import FetchError, FetchPolicy
from rmbg_hosted.flow import Inference, Removal, check
from rmbg_hosted.inputs import canonical_uuid, decode_inline, is_url
from rmbg_hosted.tasks import RemoveBackgroundTask, duplicate
from rmbg_server.gateway.files import INPUT_TYPE, FileStore
from rmbg_server.gateway.files.signing import signed_path
from rmbg_server.gateway.jobs import Job, JobStore
from rmbg_server.gateway.metrics import Metrics
from rmbg_server.gateway.settings import GatewaySettings
from rmbg_server.gateway.triton import TritonPool

log = logging.getLogger(__name__)


_MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


def sniff(data: bytes) -> str:
    """The content type an upload is kept under: PNG, JPEG, WebP as such, anything else as bytes."""
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else INPUT_TYPE


class Services(Protocol):
    """What the ports use of the app's state (``state.Gateway``)."""

    settings: GatewaySettings
    metrics: Metrics
    pool: TritonPool
    store: JobStore
    files: FileStore
    aliases: dict[str, str]
    policy: FetchPolicy
    callback_policy: FetchPolicy
    signing_key: bytes

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
        self.policy, self.callback_policy = services.policy, services.callback_policy
        self.cost_per_image = services.settings.cost_per_image
        self.max_ttl_s = services.settings.max_ttl

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
        """Keep an output for its ttl; its URL is a signed capability (no key needed, dead at expiry)."""
        stored = await self.services.files.put(image_uuid, data, content_type, ttl_s or self.settings.ttl,
                                               tenant=self.tenant, quota_bytes=self.settings.quota_bytes)
        return self.settings.base_url + signed_path(self.services.signing_key, stored.name, stored.expires_at)

    async def lookup(self, image_uuid: str) -> bytes | None:
        found = await self.services.files.find(image_uuid, self.tenant)
        return found[0] if found else None

    async def notify(self, url: str, body: dict[str, Any]) -> None:
        self.services.spawn(self.services.deliver(url, body))  # the caller does not wait for the receiver

    def failed(self, error: RmbgError) -> None:
        if isinstance(error, FetchError):
            self.services.metrics.fetch_failures.labels(error.reason).inc()

    # -- the task array's ports -------------------------------------------------------------
    async def reserve(self, task_uuid: str, ttl_s: int | None) -> bool:
        return await self.services.store.reserve_id(task_uuid, ttl_s or self.settings.ttl)

    async def release(self, task_uuid: str) -> None:
        await self.services.store.release_id(task_uuid)

    async def enqueue(self, task: RemoveBackgroundTask, removal: Removal) -> dict[str, Any]:
        kept, blobs = await self.accept(removal)
        request = task.model_dump(mode="json", exclude_unset=True)
        request.pop("inputImage", None)
        request["inputs"] = {"image": kept.image}
        job = Job(id=task.taskUUID, protocol="task", request=request, webhook_url=task.webhookURL,
                  ttl_s=task.ttl or self.settings.ttl, tenant=self.tenant, blobs=blobs)
        if not await self.services.submit(job):
            await self.forget(blobs)
            raise duplicate(task.taskUUID)
        return {"taskType": task.taskType, "taskUUID": task.taskUUID, "status": "queued"}

    async def get_response(self, task_uuid: str) -> tuple[bool, dict[str, Any]]:
        job = await self.job(task_uuid, "task", what="async task with this taskUUID", code="taskNotFound",
                             parameter="taskUUID", hint="send removeBackground with deliveryMethod async first; "
                                                        "results are kept for their ttl")
        if job.status == "completed" and job.result is not None:
            return True, {**job.result, "status": "success"}
        if job.status == "failed" and job.error is not None:
            return False, job.error
        if job.status == "cancelled":
            raise InvalidInputError("the task was cancelled", code="taskCancelled", parameter="taskUUID")
        return True, {"taskType": "removeBackground", "taskUUID": task_uuid,
                      "status": "processing" if job.status == "processing" else "queued"}

    async def keep(self, data: bytes, ttl_s: int | None) -> tuple[str, str]:
        """An upload (``imageUpload``): the tenant's file, usable as an input by its imageUUID."""
        image_uuid = str(uuid.uuid4())
        content_type = sniff(data)
        stored = await self.services.files.put(image_uuid, data, content_type, ttl_s or self.settings.ttl,
                                               tenant=self.tenant, quota_bytes=self.settings.quota_bytes)
        return image_uuid, self.settings.base_url + signed_path(self.services.signing_key, stored.name,
                                                                stored.expires_at)

    # -- queued work ------------------------------------------------------------------------
    async def job(self, job_id: str, protocol: str, *, what: str = "request", code: str = "notFound",
                  parameter: str | None = None, hint: str = "results are kept for their ttl") -> Job:
        """This tenant's job of ``protocol``; anything else (missing, another protocol's, another
        tenant's) is the same NotFoundError, so ids reveal nothing."""
        job = await self.services.store.get(job_id)
        if job is None or job.protocol != protocol or job.tenant != self.tenant:
            raise NotFoundError(f"no {what} {job_id[:80]!r} here ({hint})", code=code, parameter=parameter)
        return job

    async def accept(self, removal: Removal) -> tuple[Removal, list[str]]:
        """Queued work, checked now and made small: everything the job would fail on without running is
        refused at once (a model never configured, a forbidden address, bad base64, not an image);
        an outage is not (the job waits it out). Inline images are stored as the tenant's files, so the
        job row holds their ids, within the tenant's quota."""
        try:
            await check(removal, self, outage_ok=True)  # accepted in an outage: the runner waits it out
        except RmbgError as exc:
            self.failed(exc)
            raise
        kept: dict[str, str] = {}
        for field in ("image", "background"):
            value = getattr(removal, field)
            if isinstance(value, str) and not is_url(value) and canonical_uuid(value) is None:
                name = removal.fields.image if field == "image" else removal.fields.background or field
                data = decode_inline(value, name, self.policy.max_bytes)
                blob = str(uuid.uuid4())  # its own id: the same image in two jobs is two files, deleted apart
                await self.services.files.put(blob, data, INPUT_TYPE, self.max_ttl_s, tenant=self.tenant,
                                              quota_bytes=self.settings.quota_bytes)
                kept[field] = blob
        return dataclasses.replace(removal, **kept), list(kept.values())

    async def forget(self, blobs: list[str]) -> None:
        for blob in blobs:
            await self.services.files.delete(blob)
