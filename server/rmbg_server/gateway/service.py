"""What every protocol does with a request: load the input, call Triton, keep or upload the output.

The routes (``app.py``) and the job runner both call these methods, so a task run synchronously
and the same task run as an async job go through one path. Every failure is a ``TaskError``
naming the request's own parameter (``inputs.image``, ``image_url``, ``payload.image``...), so each
protocol can put it in its own error shape.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from rmbg_backend.contract import ensemble_name
from rmbg_client import InvalidInputError, RemovalResult, RmbgError, ServerUnavailableError, UploadError
from rmbg_client.fetch import FetchError, upload_async
from rmbg_client.images import task_image_bytes_async, to_data_uri
from rmbg_client.tasks import (
    DEFAULT_MODEL,
    RemoveBackgroundTask,
    TaskError,
    content_uuid,
    parse_task,
    task_result,
)
from rmbg_server.gateway.files import EXTENSIONS, FileStore
from rmbg_server.gateway.jobs import Job
from rmbg_server.gateway.metrics import Metrics
from rmbg_server.gateway.protocols import (
    FalRemoveRequest,
    FalReplaceRequest,
    fal_error,
    gmi_error,
)
from rmbg_server.gateway.settings import GatewaySettings
from rmbg_server.gateway.triton import TritonPool

log = logging.getLogger(__name__)

# FetchError codes -> the error codes clients see.
FETCH_CODES = {"scheme": "invalidImageURL", "bad_url": "invalidImageURL", "forbidden_address": "forbiddenAddress",
               "dns": "imageFetchFailed", "connect": "imageFetchFailed", "http_status": "imageFetchFailed",
               "too_large": "imageTooLarge", "timeout": "imageFetchTimeout", "redirects": "tooManyRedirects"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# "<tensor or option>: message" inside a Triton error text.
_SERVER_FIELD = re.compile(r"(?:^|[\s,\]])(IMAGE|BACKGROUND|OPTIONS|[a-z][A-Za-z]*): (.+)$", re.S)


@dataclass(frozen=True)
class Params:
    """Which request parameter each server-side input stands for, per protocol."""

    image: str
    background: str | None = None
    settings: str | None = None


TASK_PARAMS = Params("inputs.image", None, "settings")
FAL_PARAMS = Params("image_url", "ref_image_url")
GMI_PARAMS = Params("payload.image")


@dataclass(frozen=True)
class Output:
    result: RemovalResult
    image_uuid: str
    url: str | None

    @property
    def width(self) -> int:
        return int(self.result.info.get("width", 0))

    @property
    def height(self) -> int:
        return int(self.result.info.get("height", 0))

    @property
    def file_name(self) -> str:
        return f"{self.image_uuid}.{EXTENSIONS.get(self.result.content_type, 'bin')}"


class Processor:
    def __init__(self, settings: GatewaySettings, pool: TritonPool, files: FileStore, metrics: Metrics) -> None:
        self.settings, self.pool, self.files, self.metrics = settings, pool, files, metrics
        self.aliases = settings.model_aliases
        self.policy = settings.fetch_policy

    # -- pieces -----------------------------------------------------------------------------
    def resolve_model(self, name: str, parameter: str | None = "model") -> str:
        """An alias -> a loaded model family; a clear error naming what is loaded otherwise."""
        family = self.aliases.get(name)
        if family is None:
            raise TaskError(parameter, f"unknown model {name[:100]!r}; accepted: {', '.join(sorted(self.aliases))}",
                            code="unsupportedModel")
        served = self.pool.served_models()
        if family not in served:
            loaded = ", ".join(sorted(served)) or "none (no Triton endpoint is ready)"
            raise TaskError(parameter, f"model {name!r} needs {ensemble_name(family)}, which is not loaded; loaded: "
                                       f"{loaded}. Build it (rmbg build-repo --model {family}) or serve this name "
                                       f"with a loaded model (--alias {name}=MODEL)", code="modelNotLoaded")
        return family

    async def load_image(self, value: Any, parameter: str) -> tuple[bytes, str]:
        """The input's bytes and its inputImageUUID: an earlier output's imageUUID, a URL, a data URI, base64."""
        if isinstance(value, str) and _UUID.match(value.strip()):
            found = await self.files.find(value.strip().lower())
            if found is None:
                raise TaskError(parameter, f"no output with imageUUID {value.strip()} is stored here (outputs live "
                                           "for their ttl, default 86400 s)", code="imageNotFound")
            return found[0], value.strip().lower()
        try:
            data = await task_image_bytes_async(value, self.policy, name=parameter)
        except FetchError as exc:
            self.metrics.fetch_failures.labels(exc.code).inc()
            raise TaskError(parameter, str(exc).removeprefix(f"{parameter}: "), code=FETCH_CODES[exc.code]) from None
        except InvalidInputError as exc:
            raise TaskError(parameter, str(exc).removeprefix(f"{parameter}: "), code="invalidImage") from None
        return data, content_uuid(data)

    def _server_input_error(self, exc: InvalidInputError, params: Params) -> TaskError:
        text = str(exc)
        match = _SERVER_FIELD.search(text)
        if match is None:
            return TaskError(None, text, code="invalidRequest")
        name, message = match.group(1), match.group(2).strip()
        where = {"IMAGE": params.image, "BACKGROUND": params.background, "OPTIONS": params.settings}.get(
            name, f"{params.settings}.{name}" if params.settings else name)
        code = "invalidImage" if name in ("IMAGE", "BACKGROUND") else "invalidParameter"
        return TaskError(where, message, code=code)

    async def infer(self, model: str, image: bytes, options: dict[str, Any] | None, background: bytes | None,
                    params: Params) -> RemovalResult:
        try:
            with self.metrics.inference.labels(model).time():
                return await self.pool.remove(model, image, options, background)
        except InvalidInputError as exc:
            raise self._server_input_error(exc, params) from None
        except ServerUnavailableError as exc:
            raise TaskError(None, f"the inference server is unavailable: {str(exc)[:300]}", code="serviceUnavailable",
                            status=503) from None
        except RmbgError as exc:
            log.error("inference failed: %s", exc)
            raise TaskError(None, f"the inference server failed: {str(exc)[:300]}", code="internalError",
                            status=500) from None

    async def produce(self, model: str, image: bytes, options: dict[str, Any] | None, *, params: Params,
                      background: bytes | None = None, store: bool = True, ttl_s: int | None = None) -> Output:
        """Run the model; keep the output in the file store (served at /files/...) unless ``store`` is off."""
        result = await self.infer(model, image, options, background, params)
        image_uuid = str(uuid.uuid4())
        url = None
        if store:
            stored = await self.files.put(image_uuid, result.data, result.content_type, ttl_s or self.settings.ttl_s)
            url = f"{self.settings.base_url}/files/{stored.name}"
        return Output(result, image_uuid, url)

    # -- protocols --------------------------------------------------------------------------
    async def run_task(self, task: RemoveBackgroundTask) -> dict[str, Any]:
        """One removeBackground task -> its result object (001/003)."""
        try:
            options = task.options()
            output_type = task.output_type(hosts_files=True)
            model = self.resolve_model(task.model or DEFAULT_MODEL)
            data, input_uuid = await self.load_image(task.image, "inputs.image")
            # Only hosted results live (ttl "applies when outputType is URL"): base64 answers are not kept.
            hosted = output_type == "URL" and not task.uploadEndpoint
            out = await self.produce(model, data, options, params=TASK_PARAMS, store=hosted, ttl_s=task.ttl)
            url = out.url
            if task.uploadEndpoint:
                try:
                    await upload_async(task.uploadEndpoint, out.result.data, out.result.content_type, self.policy)
                except UploadError as exc:
                    raise TaskError("uploadEndpoint", str(exc), code="uploadFailed") from None
                url = task.uploadEndpoint.split("?", 1)[0]
        except TaskError as exc:
            raise exc.for_task(task.taskUUID, task.taskType) from None
        return task_result(task, output_type=output_type, data=out.result.data, content_type=out.result.content_type,
                           image_uuid=out.image_uuid, input_image_uuid=input_uuid, url=url,
                           cost_per_image=self.settings.cost_per_image)

    async def run_fal(self, operation: str, request: FalRemoveRequest | FalReplaceRequest) -> dict[str, Any]:
        """fal remove / replace (002) -> the sync body."""
        background = None
        if isinstance(request, FalReplaceRequest):
            if request.prompt:
                raise TaskError("prompt", "generative background replacement is not offered here; give "
                                          "ref_image_url, an image composited behind the subject", code="unsupported",
                                status=422)
            if request.num_images != 1:
                raise TaskError("num_images", "must be 1: compositing a reference image gives one result",
                                code="unsupported", status=422)
            ref = request.ref_image_url or request.ref_image_file
            if not ref:
                raise TaskError("ref_image_url", "is required: the background image (URL, data URI or base64)",
                                code="missing", status=422)
            background, _ = await self.load_image(ref, "ref_image_url")
        model = self.resolve_model(f"fal-ai/bria/background/{operation}", None)
        data, _ = await self.load_image(request.image_url, "image_url")
        out = await self.produce(model, data, None, params=FAL_PARAMS, background=background,
                                 store=not request.sync_mode)
        image = {"url": to_data_uri(out.result.data, out.result.content_type) if request.sync_mode else out.url,
                 "content_type": out.result.content_type, "file_name": out.file_name,
                 "file_size": len(out.result.data), "width": out.width, "height": out.height}
        if isinstance(request, FalReplaceRequest):
            return {"images": [image], "seed": request.seed or 0}
        return {"image": image}

    async def run_gmi(self, request: dict[str, Any]) -> dict[str, Any]:
        """GMI (004) -> the ``outcome`` of a successful request."""
        model = self.resolve_model(request["model"], "model")
        data, _ = await self.load_image(request["payload"]["image"], "payload.image")
        out = await self.produce(model, data, None, params=GMI_PARAMS)
        return {"media_urls": [out.url]}

    # -- jobs -------------------------------------------------------------------------------
    async def handle_job(self, job: Job) -> tuple[str, dict[str, Any]]:
        """The JobRunner's handler: ("completed", body) or ("failed", the protocol's error body).

        A Triton outage is waited out (bounded) rather than failing an accepted job at once.
        """
        for attempt in range(6):
            try:
                return "completed", await self._run_job(job)
            except TaskError as exc:
                if exc.code == "serviceUnavailable" and attempt < 5:
                    await asyncio.sleep(2.0 * 2 ** attempt)
                    continue
                return "failed", self._job_error(job, exc)
        raise AssertionError("unreachable")

    async def _run_job(self, job: Job) -> dict[str, Any]:
        if job.protocol == "task":
            task = parse_task(job.request)
            assert isinstance(task, RemoveBackgroundTask)
            return await self.run_task(task)
        if job.protocol == "fal":
            from rmbg_server.gateway.protocols import FAL_REQUESTS

            operation = job.request["operation"]
            return await self.run_fal(operation, FAL_REQUESTS[operation].model_validate(job.request["input"]))
        if job.protocol == "gmi":
            return await self.run_gmi(job.request)
        raise TaskError(None, f"unknown job protocol {job.protocol!r}", code="internalError", status=500)

    @staticmethod
    def _job_error(job: Job, exc: TaskError) -> dict[str, Any]:
        if job.protocol == "fal":
            return fal_error(exc.parameter, exc.message, exc.code)
        if job.protocol == "gmi":
            return gmi_error(exc.parameter, exc.message, exc.code)
        return exc.for_task(job.id, "removeBackground").shape()
