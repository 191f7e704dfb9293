"""The gateway's HTTP face: the hosted APIs' routes (DESIGN.md section 3) over one Processor.

``create_app(settings)`` builds a FastAPI app; ``rmbg gateway`` runs it with uvicorn. Startup opens
the job and file stores (SQLite + files in ``--data-dir``, or Redis), connects the Triton pool and
starts one JobRunner for async tasks, the fal queue and the GMI queue; shutdown stops them.

Limits, in the order a request meets them: API key and its token bucket (401/429), body size
(413), then for work that runs now the in-flight bound (``--max-inflight``, 429 + Retry-After)
and for queued work the queue bound (``--max-queued``, 429 + Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter

from rmbg_client.fetch import resolve
from rmbg_client.tasks import GetResponseTask, RemoveBackgroundTask, TaskError, parse_task
from rmbg_client.webhooks import post_webhook
from rmbg_server.gateway.auth import KeyRing
from rmbg_server.gateway.files import open_file_store
from rmbg_server.gateway.jobs import Job, JobRunner, open_job_store
from rmbg_server.gateway.metrics import Metrics
from rmbg_server.gateway.protocols import (
    FAL_OPERATIONS,
    FAL_REQUESTS,
    FAL_STATUS,
    GMI_STATUS,
    FalQueued,
    FalRemoveRequest,
    FalRemoveResponse,
    FalReplaceRequest,
    FalReplaceResponse,
    FalStatus,
    GmiRequest,
    GmiStatus,
    GmiSubmitted,
    TaskBody,
    TaskResponse,
    fal_error,
    gmi_error,
    task_errors,
)
from rmbg_server.gateway.service import Processor
from rmbg_server.gateway.settings import GatewaySettings
from rmbg_server.gateway.triton import TritonPool

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
HEALTH_PATHS = ("/healthz", "/readyz")
TASKS_PATH = "/v1"
FAL_PREFIX = "/fal-ai/bria/background"
FAL_QUEUE_PREFIX = "/queue/fal-ai/bria/background"
GMI_PATH = "/api/v1/ie/requestqueue/apikey/requests"


# Printable ASCII that a JSON string holds as is. Deleting these from a string's bytes leaves only
# what would need escaping; that test costs 0.5 ms on a 1.6 MB base64 image (str.isprintable: 4.6 ms).
_JSON_PLAIN = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')


class BlobJSONResponse(JSONResponse):
    """JSON whose long strings (base64 images, data URIs) are spliced in rather than escaped and copied:
    a 1 MP cut-out is 1.6 MB of base64, and encoding it as a JSON string costs more than the rest."""

    def render(self, content: Any) -> bytes:
        blobs: list[bytes] = []
        token = secrets.token_hex(16)  # placeholder marks: nothing else in the document contains them

        def lift(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: lift(v) for k, v in value.items()}
            if isinstance(value, list):
                return [lift(v) for v in value]
            if isinstance(value, str) and len(value) > 4096 and value.isascii():
                raw = value.encode("ascii")
                if not raw.translate(None, _JSON_PLAIN):  # nothing left: no byte needs escaping
                    blobs.append(raw)
                    return f"{token}{len(blobs) - 1}{token}"
            return value

        text = json.dumps(lift(content), ensure_ascii=False, separators=(",", ":")).encode()
        if not blobs:
            return text
        parts = text.split(token.encode())
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            out += [blobs[int(parts[i])], parts[i + 1]]
        return b"".join(out)


class Busy(Exception):
    """A bound is reached: answer 429 with Retry-After."""


def error_body(path: str, parameter: str | None, message: str, code: str) -> dict[str, Any]:
    """An error in the shape of the protocol that ``path`` belongs to."""
    if path == TASKS_PATH or path.startswith(TASKS_PATH + "/"):
        return task_errors(TaskError(parameter, message, code=code))
    if path.startswith(GMI_PATH):
        return gmi_error(parameter, message, code)
    return fal_error(parameter, message, code) if parameter else {"detail": message}


class Gateway:
    """The app's state: settings, stores, Triton pool, processor, limits, background work."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.keys = KeyRing(settings.api_keys, settings.rate_per_key, settings.burst_per_key)
        self.pool = TritonPool(settings.triton, timeout_s=settings.triton_timeout_s)
        self.inflight = 0
        self._queued = (0.0, 0)  # (when counted, queued jobs)
        self._background: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_job_store(s.data_dir, s.redis_url)
        self.files = open_file_store(s.data_dir, s.redis_url)
        self.http = httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(10.0), follow_redirects=False)
        await self.pool.start()
        self.processor = Processor(s, self.pool, self.files, self.metrics)
        self.runner = JobRunner(self.store, self.processor.handle_job, concurrency=s.workers, lease_s=s.job_lease_s,
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
        await self.http.aclose()
        await self.store.close()
        await self.files.close()

    # -- limits -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def admit(self, units: int = 1) -> Iterator[None]:
        """Work that runs now: at most ``--max-inflight`` units at once, else Busy (429)."""
        if units and self.inflight + units > self.settings.max_inflight:
            self.metrics.rejected.labels("inflight").inc()
            raise Busy(f"{self.inflight} requests in flight, the limit is {self.settings.max_inflight}")
        self.inflight += units
        self.metrics.inflight.set(self.inflight)
        try:
            yield
        finally:
            self.inflight -= units
            self.metrics.inflight.set(self.inflight)

    async def submit(self, job: Job) -> bool:
        """Store a job (durably, before it is acknowledged) unless the queue is full (Busy)."""
        when, queued = self._queued
        if time.monotonic() - when > 1.0:
            queued = (await self.store.counts()).get("queued", 0)
            self._queued = (time.monotonic(), queued)
        if queued >= self.settings.max_queued:
            self.metrics.rejected.labels("queue").inc()
            raise Busy(f"{queued} jobs are queued, the limit is {self.settings.max_queued}")
        self._queued = (self._queued[0], self._queued[1] + 1)
        return await self.store.submit(job)

    # -- webhooks ---------------------------------------------------------------------------
    async def check_url(self, url: str) -> None:
        await resolve(url, self.processor.policy, what="webhookURL")

    async def deliver(self, url: str, body: dict[str, Any]) -> None:
        ok = await post_webhook(self.http, url, body, secret=self.settings.webhook_secret, check_url=self.check_url)
        (self.metrics.webhooks if ok else self.metrics.webhook_failures).inc()

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def job_finished(self, job: Job) -> None:
        self.metrics.tasks.labels(job.protocol, job.status).inc()
        if job.webhook_url:
            body = {"data": [job.result]} if job.status == "completed" else {"errors": [job.error]}
            await self.deliver(job.webhook_url, body)

    # -- the task array ---------------------------------------------------------------------
    async def one_task(self, raw: Any) -> tuple[bool, dict[str, Any]]:
        """One task of an array: (True, data item) or (False, error item). Fails alone."""
        try:
            task = parse_task(raw)
            if isinstance(task, GetResponseTask):
                return await self.get_response(task)
            if task.deliveryMethod == "async":
                return True, await self.submit_task(task, raw)
            if not await self.store.reserve_id(task.taskUUID, task.ttl or self.settings.ttl_s):
                raise duplicate(task)
            result = await self.processor.run_task(task)
            self.metrics.tasks.labels("task", "completed").inc()
            if task.webhookURL:
                self.spawn(self.deliver(task.webhookURL, {"data": [result]}))
            return True, result
        except TaskError as exc:
            self.metrics.tasks.labels("task", "failed").inc()
            return False, exc.shape()

    async def submit_task(self, task: RemoveBackgroundTask, raw: dict[str, Any]) -> dict[str, Any]:
        try:  # checked now, so a bad task fails at once rather than in the queue
            task.options()
            task.output_type(hosts_files=True)
            self.processor.resolve_model(task.model or "isnet")
        except TaskError as exc:
            raise exc.for_task(task.taskUUID, task.taskType) from None
        job = Job(id=task.taskUUID, protocol="task", request=raw, webhook_url=task.webhookURL,
                  ttl_s=task.ttl or self.settings.ttl_s)
        if not await self.submit(job):
            raise duplicate(task)
        return {"taskType": task.taskType, "taskUUID": task.taskUUID, "status": "queued"}

    async def get_response(self, task: GetResponseTask) -> tuple[bool, dict[str, Any]]:
        job = await self.store.get(task.taskUUID)
        if job is None or job.protocol != "task":
            raise TaskError("taskUUID", "no async task with this taskUUID here (send removeBackground with "
                                        "deliveryMethod async first; results are kept for their ttl)",
                            code="taskNotFound", task_uuid=task.taskUUID, task_type=task.taskType)
        if job.status == "completed" and job.result is not None:
            return True, {**job.result, "status": "success"}
        if job.status == "failed" and job.error is not None:
            return False, job.error
        if job.status == "cancelled":
            raise TaskError("taskUUID", "the task was cancelled", code="taskCancelled", task_uuid=task.taskUUID,
                            task_type=task.taskType)
        return True, {"taskType": "removeBackground", "taskUUID": task.taskUUID,
                      "status": "processing" if job.status == "processing" else "queued"}

    # -- metrics ----------------------------------------------------------------------------
    async def render_metrics(self) -> bytes:
        with contextlib.suppress(Exception):  # the store being down must not break /metrics
            counts = await self.store.counts()
            for status, n in counts.items():
                self.metrics.jobs.labels(status).set(n)
        healthy = len(self.pool.healthy())
        self.metrics.endpoints.labels("healthy").set(healthy)
        self.metrics.endpoints.labels("unhealthy").set(len(self.pool.endpoints) - healthy)
        return self.metrics.render()


def duplicate(task: RemoveBackgroundTask) -> TaskError:
    return task.error("taskUUID", f"{task.taskUUID} was used before; every task needs a new UUID v4",
                      code="duplicateTaskUUID")


class GatewayMiddleware:
    """Pure ASGI (cheap): per-route metrics, API keys with per-key rate limits, the body size cap."""

    def __init__(self, app: Callable, gateway: Gateway) -> None:
        self.app, self.gw = app, gateway

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        if scope["method"] in ("POST", "PUT") and b"json" not in dict(scope["headers"]).get(b"content-type", b""):
            # Every body here is JSON; curl -d without a Content-Type says form data. Read it as JSON.
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                     + [(b"content-type", b"application/json")]}
        try:
            refusal = self._refusal(scope)
            if refusal is None:
                receive, refusal = await self._capped(scope, receive)
            if refusal is not None:
                await refusal(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.gw.metrics.requests.labels(route, scope["method"], str(status[0])).inc()
            self.gw.metrics.latency.labels(route, scope["method"]).observe(time.perf_counter() - started)

    def _refusal(self, scope: dict) -> Response | None:
        path = scope["path"]
        keys = self.gw.keys
        if not keys.enabled or path in HEALTH_PATHS or path == "/" or path.startswith("/static/"):
            return None
        headers = dict(scope["headers"])
        key_id = keys.identify(headers.get(b"authorization", b"").decode("latin-1"))
        if key_id is None:
            body = error_body(path, None, "missing or unknown API key: send Authorization: Bearer KEY (or Key KEY)",
                              "invalidApiKey")
            return JSONResponse(body, 401, headers={"WWW-Authenticate": 'Bearer realm="rmbg"'})
        wait = keys.take(key_id)
        if wait:
            self.gw.metrics.rejected.labels("rate").inc()
            body = error_body(path, None, f"rate limit of this API key reached ({keys.rate_per_s:g} requests/s, "
                                          f"burst {keys.burst}); retry after {wait:.2f} s", "rateLimited")
            return JSONResponse(body, 429, headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return None

    async def _capped(self, scope: dict, receive: Callable) -> tuple[Callable, Response | None]:
        """Refuse a body over ``max_body_bytes`` before the app reads it (declared or streamed)."""
        limit = self.gw.settings.max_body_bytes
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        too_large = JSONResponse(error_body(scope["path"], "body", f"is over the {limit:,}-byte limit; send large "
                                            "images by URL", "payloadTooLarge"), 413)
        if declared is not None:
            return receive, too_large if declared.isdigit() and int(declared) > limit else None
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return receive, None
        messages, size = [], 0  # chunked: buffer up to the limit, then replay
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > limit:
                return receive, too_large
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        return replay, None


def _busy_response(path: str, exc: Busy, retry_after: int) -> JSONResponse:
    body = error_body(path, None, f"the gateway is at capacity ({exc}); retry after {retry_after} s", "serverBusy")
    return JSONResponse(body, 429, headers={"Retry-After": str(retry_after)})


def _fal_task_error(exc: TaskError) -> JSONResponse:
    status = exc.status if exc.status >= 500 else 422
    body = fal_error(exc.parameter, exc.message, exc.code) if exc.parameter else {"detail": exc.message}
    return JSONResponse(body, status)


def _gmi_task_error(exc: TaskError) -> JSONResponse:
    return JSONResponse(gmi_error(exc.parameter, exc.message, exc.code), exc.status if exc.status >= 500 else 400)


def create_app(settings: GatewaySettings) -> FastAPI:
    gw = Gateway(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(title="rmbg gateway", version="1", lifespan=lifespan,
                  description="The hosted background-removal APIs (Runware task arrays, fal, GMI queue) served by "
                              "your own Triton. Authenticate with `Authorization: Bearer KEY` or `Key KEY`.")
    app.state.gateway = gw
    app.add_middleware(GatewayMiddleware, gateway=gw)
    retry_after = settings.retry_after_s

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if request.url.path.startswith(GMI_PATH):
            first = errors[0] if errors else {"loc": (), "msg": "invalid body", "type": "invalid"}
            where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
            return JSONResponse(gmi_error(where, first["msg"], first["type"]), 400)
        for e in errors:  # fal: FastAPI's own shape; never quote an image value back
            if e.get("loc", ())[-1:] in (("image_url",), ("ref_image_url",)):
                e.pop("input", None)
        return JSONResponse({"detail": jsonable_encoder(errors)}, 422)

    # -- task array (001, 003) --------------------------------------------------------------
    @app.post(TASKS_PATH, response_model=TaskResponse, response_model_exclude_none=True, tags=["tasks"],
              summary="Run removeBackground tasks (one object or an array); getResponse fetches async results",
              responses={400: {"model": TaskResponse, "description": "every task failed"},
                         413: {"description": "body too large"}, 429: {"description": "at capacity"}})
    async def tasks(request: Request) -> Response:
        try:
            raw = json.loads(await request.body())
        except (ValueError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            return JSONResponse(task_errors(TaskError("body", f"is not valid JSON ({reason})", code="invalidJSON")),
                                400)
        items = raw if isinstance(raw, list) else [raw]
        if not items or len(items) > settings.max_tasks_per_request:
            message = f"must hold 1 to {settings.max_tasks_per_request} tasks, got {len(items)}"
            return JSONResponse(task_errors(TaskError("body", message, code="invalidParameter")), 400)
        units = sum(1 for t in items if isinstance(t, dict) and t.get("taskType") == "removeBackground"
                    and t.get("deliveryMethod") != "async")
        try:
            with gw.admit(units):
                outcomes = await asyncio.gather(*(gw.one_task(item) for item in items))
        except Busy as exc:
            return _busy_response(TASKS_PATH, exc, retry_after)
        data = [body for ok, body in outcomes if ok]
        errors = [body for ok, body in outcomes if not ok]
        out: dict[str, Any] = {"data": data} if data else {}
        if errors:
            out["errors"] = errors
        return BlobJSONResponse(out, 200 if data else 400)

    # -- fal sync (002) ---------------------------------------------------------------------
    async def fal_now(operation: str, body: FalRemoveRequest | FalReplaceRequest) -> Response:
        try:
            with gw.admit():
                return BlobJSONResponse(await gw.processor.run_fal(operation, body))
        except Busy as exc:
            return _busy_response(FAL_PREFIX, exc, retry_after)
        except TaskError as exc:
            return _fal_task_error(exc)

    @app.post(f"{FAL_PREFIX}/remove", response_model=FalRemoveResponse, tags=["fal"],
              summary="Remove the background (fal-ai/bria/background/remove)")
    async def fal_remove(body: FalRemoveRequest) -> Response:
        return await fal_now("remove", body)

    @app.post(f"{FAL_PREFIX}/replace", response_model=FalReplaceResponse, tags=["fal"],
              summary="Composite ref_image_url behind the subject (no generative prompt)")
    async def fal_replace(body: FalReplaceRequest) -> Response:
        return await fal_now("replace", body)

    # -- fal queue --------------------------------------------------------------------------
    def fal_urls(operation: str, request_id: str) -> dict[str, str]:
        base = f"{settings.base_url}{FAL_QUEUE_PREFIX}/{operation}/requests/{request_id}"
        return {"request_id": request_id, "response_url": base, "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel"}

    async def fal_enqueue(operation: str, body: FalRemoveRequest | FalReplaceRequest) -> Response:
        if isinstance(body, FalReplaceRequest) and body.prompt:
            return _fal_task_error(TaskError("prompt", "generative background replacement is not offered here; "
                                                       "give ref_image_url, an image composited behind the subject",
                                             code="unsupported"))
        try:
            gw.processor.resolve_model(f"fal-ai/bria/background/{operation}", None)
            request_id = str(uuid.uuid4())
            await gw.submit(Job(id=request_id, protocol="fal", ttl_s=settings.ttl_s,
                                request={"operation": operation, "input": body.model_dump(exclude_unset=True)}))
        except Busy as exc:
            return _busy_response(FAL_QUEUE_PREFIX, exc, retry_after)
        except TaskError as exc:
            return _fal_task_error(exc)
        return JSONResponse(fal_urls(operation, request_id))

    @app.post(f"{FAL_QUEUE_PREFIX}/remove", response_model=FalQueued, tags=["fal queue"])
    async def fal_queue_remove(body: FalRemoveRequest) -> Response:
        return await fal_enqueue("remove", body)

    @app.post(f"{FAL_QUEUE_PREFIX}/replace", response_model=FalQueued, tags=["fal queue"])
    async def fal_queue_replace(body: FalReplaceRequest) -> Response:
        return await fal_enqueue("replace", body)

    async def fal_job(request_id: str) -> Job | None:
        job = await gw.store.get(request_id)
        return job if job is not None and job.protocol == "fal" else None

    def not_found(request_id: str) -> JSONResponse:
        return JSONResponse({"detail": f"request {request_id} not found (results are kept for their ttl)"}, 404)

    async def fal_status(operation: str, request_id: str) -> Response:
        job = await fal_job(request_id)
        if job is None:
            return not_found(request_id)
        urls = fal_urls(job.request.get("operation", operation), request_id)
        status = FalStatus(status=FAL_STATUS[job.status], request_id=request_id, response_url=urls["response_url"],
                           queue_position=0 if job.status == "queued" else None, logs=[],
                           error=(job.error or {}).get("detail", [{}])[0].get("msg") if job.status == "failed"
                           else "cancelled" if job.status == "cancelled" else None)
        return JSONResponse(status.model_dump(exclude_none=True))

    async def fal_result(request_id: str) -> Response:
        job = await fal_job(request_id)
        if job is None:
            return not_found(request_id)
        if job.status == "completed" and job.result is not None:
            return JSONResponse(job.result)
        if job.status == "failed":
            return JSONResponse(job.error or {"detail": "failed"}, 422)
        if job.status == "cancelled":
            return JSONResponse({"detail": f"request {request_id} was cancelled"}, 400)
        return JSONResponse({"detail": f"request {request_id} is still {FAL_STATUS[job.status]}"}, 400)

    async def fal_cancel(request_id: str) -> Response:
        job = await fal_job(request_id)
        if job is None:
            return not_found(request_id)
        if await gw.store.cancel(request_id):
            return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202)
        return JSONResponse({"status": "ALREADY_COMPLETED" if job.status != "processing" else "IN_PROGRESS"}, 400)

    def bind(op: str, handler: Callable) -> Callable:
        async def route(request_id: str) -> Response:
            return await (handler(op, request_id) if handler is fal_status else handler(request_id))
        return route

    for operation in FAL_OPERATIONS:
        base = f"{FAL_QUEUE_PREFIX}/{operation}/requests/{{request_id}}"
        app.add_api_route(f"{base}/status", bind(operation, fal_status), methods=["GET"], tags=["fal queue"],
                          response_model=FalStatus, summary=f"Status of a queued {operation} request")
        app.add_api_route(base, bind(operation, fal_result), methods=["GET"], tags=["fal queue"],
                          summary=f"Result of a queued {operation} request (the sync body)")
        app.add_api_route(f"{base}/cancel", bind(operation, fal_cancel), methods=["PUT"], tags=["fal queue"],
                          summary=f"Cancel a queued {operation} request")
    # fal's clients may address a request by the app id alone (owner/app), not the endpoint id
    app_level = "/queue/fal-ai/bria/requests/{request_id}"
    app.add_api_route(f"{app_level}/status", bind("remove", fal_status), methods=["GET"], include_in_schema=False)
    app.add_api_route(app_level, bind("remove", fal_result), methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{app_level}/cancel", bind("remove", fal_cancel), methods=["PUT"], include_in_schema=False)

    # -- GMI queue (004) --------------------------------------------------------------------
    @app.post(GMI_PATH, response_model=GmiSubmitted, tags=["GMI queue"], summary="Queue a background removal")
    async def gmi_submit(body: GmiRequest) -> Response:
        try:
            gw.processor.resolve_model(body.model, "model")
            request_id = uuid.uuid4().hex
            await gw.submit(Job(id=request_id, protocol="gmi", request=body.model_dump(), ttl_s=settings.ttl_s))
        except Busy as exc:
            return _busy_response(GMI_PATH, exc, retry_after)
        except TaskError as exc:
            return _gmi_task_error(exc)
        return JSONResponse({"request_id": request_id, "status": "queued"})

    @app.get(GMI_PATH + "/{request_id}", response_model=GmiStatus, response_model_exclude_none=True,
             tags=["GMI queue"], summary="Status and, once done, outcome.media_urls")
    async def gmi_status(request_id: str) -> Response:
        job = await gw.store.get(request_id)
        if job is None or job.protocol != "gmi":
            return JSONResponse(gmi_error("request_id", f"request {request_id} not found", "notFound"), 404)
        body = GmiStatus(request_id=request_id, model=job.request.get("model", ""), status=GMI_STATUS[job.status],
                         outcome=job.result if job.status == "completed" else None,
                         error=(job.error or {}).get("error", job.error) if job.status == "failed" else None,
                         created_at=job.created_at, updated_at=job.updated_at)
        return JSONResponse(body.model_dump(exclude_none=True))

    # -- hosted outputs ---------------------------------------------------------------------
    @app.get("/files/{name}", tags=["files"], summary="A hosted output, until its ttl expires",
             responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}, 404: {}})
    async def hosted_file(name: str) -> Response:
        found = await gw.files.get(name)
        if found is None:
            return JSONResponse({"detail": f"{name[:80]} not found (outputs are deleted after their ttl)"}, 404)
        data, content_type = found
        return Response(data, media_type=content_type, headers={"Cache-Control": "private, max-age=3600"})

    # -- operations -------------------------------------------------------------------------
    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: a Triton endpoint answers")
    async def readyz() -> Response:
        healthy = gw.pool.healthy()
        body = {"status": "ready" if healthy else "not ready", "endpoints": {
            e.address: "healthy" if e.healthy else "unhealthy" for e in gw.pool.endpoints.values()},
            "models": sorted(gw.pool.served_models())}
        return JSONResponse(body, 200 if healthy else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(await gw.render_metrics(), media_type=gw.metrics.content_type)

    # -- playground (written by its own module under static/, served as is) ------------------
    if (STATIC / "playground.html").is_file():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        async def playground() -> FileResponse:
            return FileResponse(STATIC / "playground.html")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        body = TypeAdapter(TaskBody).json_schema(ref_template="#/components/schemas/{model}")
        schema.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs", {}))
        schema["paths"][TASKS_PATH]["post"]["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": body}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


__all__ = ["FAL_REQUESTS", "GatewaySettings", "create_app"]
