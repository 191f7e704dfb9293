"""fal's Bria background routes (hosted-API document 002), sync and queued: a thin adapter over the flow.

``POST /fal-ai/bria/background/{remove,replace}`` runs now; ``POST /queue/fal-ai/bria/background/...``
stores a job and answers fal's queue handle (status, response and cancel URLs). Errors are fal's
shape, which is FastAPI's: ``{"detail": [{"loc": ["body", PARAM], "msg", "type"}]}``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from rmbg_backend.options import Options
from rmbg_hosted.errors import InvalidInputError, RmbgError
from rmbg_hosted.fetch import resolve
from rmbg_hosted.flow import Fields, Output, Removal, run_task
from rmbg_hosted.inputs import to_data_uri
from rmbg_server.gateway.jobs import Job
from rmbg_server.gateway.ports import GatewayPorts
from rmbg_server.gateway.responses import BlobJSONResponse, error_response
from rmbg_server.gateway.state import gateway, ports_of

PREFIX = "/fal-ai/bria/background"
QUEUE_PREFIX = "/queue/fal-ai/bria/background"
APP_QUEUE_PREFIX = "/queue/fal-ai/bria"  # fal's clients may address a request by the app id alone
OPERATIONS = ("remove", "replace")
PROTOCOL = "fal"
_STRICT = ConfigDict(extra="forbid", strict=True)
router = APIRouter()


class FalRemoveRequest(BaseModel):
    model_config = _STRICT
    image_url: str = Field(description="Input image: an http(s) URL, a data URI or base64")
    sync_mode: StrictBool = Field(False, description="return the image as a data URI; nothing is stored")


class FalReplaceRequest(BaseModel):
    model_config = _STRICT
    image_url: str = Field(description="Input image to cut out")
    ref_image_url: str = Field("", description="Background composited behind the subject (URL, data URI, base64)")
    ref_image_file: str | None = Field(None, description="Used when ref_image_url is empty")
    prompt: str | None = Field(None, description="Generative replacement is not offered: with a reference image "
                                                 "it is ignored (named in X-Rmbg-Ignored); alone it answers 422")
    negative_prompt: str = Field("", description="Only used with a prompt: ignored")
    refine_prompt: StrictBool = True
    seed: StrictInt | None = Field(None, ge=0, le=2147483647)
    fast: StrictBool = True
    num_images: StrictInt = Field(1, ge=1, le=4)
    sync_mode: StrictBool = False


REQUESTS: dict[str, type[FalRemoveRequest] | type[FalReplaceRequest]] = {
    "remove": FalRemoveRequest, "replace": FalReplaceRequest}
GENERATIVE = ("prompt", "negative_prompt", "refine_prompt", "fast")


class FalImage(BaseModel):
    url: str
    content_type: str
    file_name: str
    file_size: int
    width: int
    height: int


class FalRemoveResponse(BaseModel):
    image: FalImage


class FalReplaceResponse(BaseModel):
    images: list[FalImage]
    seed: int


class FalQueued(BaseModel):
    request_id: str
    response_url: str
    status_url: str
    cancel_url: str


class FalStatus(BaseModel):
    status: Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    request_id: str
    response_url: str | None = None
    queue_position: int | None = None
    logs: list[dict[str, Any]] | None = Field(None, description="with ?logs=1: what happened to the request")
    error: str | None = None
    error_type: str | None = None


STATUS = {"queued": "IN_QUEUE", "processing": "IN_PROGRESS", "completed": "COMPLETED", "failed": "COMPLETED",
          "cancelled": "COMPLETED"}


def error_body(error: RmbgError) -> dict[str, Any]:
    if not error.parameter:
        return {"detail": error.message}
    return {"detail": [{"loc": ["body", *error.parameter.split(".")], "msg": error.message, "type": error.code}]}


def render_error(error: RmbgError) -> JSONResponse:
    """The one rendering of an error for fal: its body, 422 for a bad request."""
    return error_response(error, error_body(error), client_status=422)


def removal(operation: str, body: FalRemoveRequest | FalReplaceRequest, *, host: bool) -> Removal:
    """A fal request as the flow's Removal (the model is the endpoint id's alias)."""
    background = None
    if isinstance(body, FalReplaceRequest):
        background = body.ref_image_url or body.ref_image_file
        if not background:
            if body.prompt:
                raise InvalidInputError("generative background replacement is not offered here; give ref_image_url, "
                                        "an image composited behind the subject", code="unsupported",
                                        parameter="prompt")
            raise InvalidInputError("is required: the background image (URL, data URI or base64)",
                                    code="missing", parameter="ref_image_url")
        if body.num_images != 1:
            raise InvalidInputError("must be 1: compositing a reference image gives one result", code="unsupported",
                                    parameter="num_images")
    return Removal(model=f"fal-ai/bria/background/{operation}", image=body.image_url, options=Options(),
                   fields=Fields(image="image_url", background="ref_image_url", model=None), background=background,
                   host=host)


def renderer(body: FalRemoveRequest | FalReplaceRequest) -> Any:
    def render(output: Output) -> dict[str, Any]:
        image = {"url": to_data_uri(output.data, output.content_type) if body.sync_mode else output.url,
                 "content_type": output.content_type, "file_name": output.file_name, "file_size": len(output.data),
                 "width": output.width, "height": output.height}
        if isinstance(body, FalReplaceRequest):
            return {"images": [image], "seed": body.seed or 0}
        return {"image": image}
    return render


def ignored(body: FalRemoveRequest | FalReplaceRequest) -> dict[str, str]:
    """The generation-only fields a replace request carried beside its reference image, for X-Rmbg-Ignored."""
    names = [f for f in GENERATIVE if f in body.model_fields_set] if isinstance(body, FalReplaceRequest) else []
    return {"X-Rmbg-Ignored": ", ".join(names)} if names else {}


def with_headers(response: Response, headers: dict[str, str]) -> Response:
    response.headers.update(headers)
    return response


def request_id_header(request_id: str) -> dict[str, str]:
    """fal names every request in this header; @fal-ai/client's ``result.requestId`` is read from it."""
    return {"x-fal-request-id": request_id}


def named_by_request_id(handler: Callable[[Request, str], Awaitable[Response]]
                        ) -> Callable[[Request, str], Awaitable[Response]]:
    """A queue route's answer, success or error, carries its request's id in ``x-fal-request-id``;
    an RmbgError (an unknown request, another tenant's) is rendered in fal's shape."""
    @functools.wraps(handler)
    async def named(request: Request, request_id: str) -> Response:
        try:
            response = await handler(request, request_id)
        except RmbgError as exc:
            response = render_error(exc)
        return with_headers(response, request_id_header(request_id))
    return named


async def run_now(request: Request, operation: str, body: FalRemoveRequest | FalReplaceRequest) -> Response:
    gw = gateway(request)
    named = request_id_header(str(uuid.uuid4()))
    try:
        with gw.admit():
            result = await run_task(removal(operation, body, host=not body.sync_mode), ports_of(request),
                                    renderer(body))
    except RmbgError as exc:
        gw.metrics.tasks.labels(PROTOCOL, "failed").inc()
        return with_headers(render_error(exc), named)
    gw.metrics.tasks.labels(PROTOCOL, "completed").inc()
    return BlobJSONResponse(result, headers=ignored(body) | named)


@router.post(f"{PREFIX}/remove", response_model=FalRemoveResponse, tags=["fal"],
             summary="Remove the background (fal-ai/bria/background/remove)")
async def fal_remove(request: Request, body: FalRemoveRequest) -> Response:
    return await run_now(request, "remove", body)


@router.post(f"{PREFIX}/replace", response_model=FalReplaceResponse, tags=["fal"],
             summary="Composite ref_image_url behind the subject (no generative prompt)")
async def fal_replace(request: Request, body: FalReplaceRequest) -> Response:
    return await run_now(request, "replace", body)


# -- the queue ---------------------------------------------------------------------------------

def origin(request: Request) -> str:
    """Where the caller reached us (``--public-url`` first): fal's clients use the returned URLs as given."""
    settings = gateway(request).settings
    if settings.public_url:
        return settings.base_url
    host = request.headers.get("host") or f"{settings.host}:{settings.port}"
    return f"{settings.scheme}://{host}"


def handle(request: Request, operation: str, request_id: str) -> dict[str, str]:
    base = f"{origin(request)}{QUEUE_PREFIX}/{operation}/requests/{request_id}"
    return {"request_id": request_id, "response_url": base, "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel"}


async def enqueue(request: Request, operation: str, body: FalRemoveRequest | FalReplaceRequest) -> Response:
    gw = gateway(request)
    ports = ports_of(request)
    webhook = request.query_params.get("fal_webhook")
    try:
        if webhook is not None:
            await check_webhook(webhook, ports)
        kept, blobs = await ports.accept(removal(operation, body, host=True))
        stored = body.model_dump(exclude_unset=True) | {"image_url": kept.image}
        if kept.background is not None and isinstance(body, FalReplaceRequest):
            stored |= {"ref_image_url": kept.background, "ref_image_file": None}
        request_id = str(uuid.uuid4())
        await gw.submit(Job(id=request_id, protocol=PROTOCOL, ttl_s=gw.settings.ttl, tenant=ports.tenant,
                            blobs=blobs, webhook_url=webhook, request={"operation": operation, "input": stored}))
    except RmbgError as exc:
        return render_error(exc)
    return JSONResponse(handle(request, operation, request_id), headers=ignored(body) | request_id_header(request_id))


@router.post(f"{QUEUE_PREFIX}/remove", response_model=FalQueued, tags=["fal queue"])
async def fal_queue_remove(request: Request, body: FalRemoveRequest) -> Response:
    return await enqueue(request, "remove", body)


@router.post(f"{QUEUE_PREFIX}/replace", response_model=FalQueued, tags=["fal queue"])
async def fal_queue_replace(request: Request, body: FalReplaceRequest) -> Response:
    return await enqueue(request, "replace", body)


async def check_webhook(url: str, ports: GatewayPorts) -> None:
    """``fal_webhook`` is checked at submit, like an image URL: its form and the address it resolves to."""
    if not url.lower().startswith(("http://", "https://")):
        raise InvalidInputError("must be an http(s) URL", parameter="fal_webhook")
    await resolve(url, ports.callback_policy, what="fal_webhook")


async def queued_job(request: Request, request_id: str) -> Job:
    return await ports_of(request).job(request_id, PROTOCOL)


def message_of(body: dict[str, Any] | None) -> str:
    """The message of a stored fal error body."""
    detail = (body or {}).get("detail", "failed")
    return str(detail[0].get("msg", "failed") if isinstance(detail, list) and detail else detail)


@named_by_request_id
async def status(request: Request, request_id: str) -> Response:
    job = await queued_job(request, request_id)
    urls = handle(request, job.request["operation"], request_id)
    error = message_of(job.error) if job.status == "failed" else "cancelled" if job.status == "cancelled" else None
    with_logs = request.query_params.get("logs", "").lower() in ("1", "true")
    body = FalStatus(status=STATUS[job.status], request_id=request_id, response_url=urls["response_url"],
                     queue_position=0 if job.status == "queued" else None, logs=logs_of(job) if with_logs else None,
                     error=error, error_type=(job.error or {}).get("detail", [{}])[0].get("type") if isinstance(
                         (job.error or {}).get("detail"), list) and job.status == "failed" else None)
    # fal's clients read `logs` (null without ?logs=1) and `queue_position` by key: they are always there
    return JSONResponse(body.model_dump(exclude_none=True) | {"logs": body.logs})


def logs_of(job: Job) -> list[dict[str, Any]]:
    """fal's log lines for a request, from what the job store knows of it."""
    def line(message: str, at: float, level: str = "INFO") -> dict[str, Any]:
        stamp = datetime.fromtimestamp(at, UTC).isoformat()
        return {"message": message, "level": level, "source": "rmbg", "timestamp": stamp}

    lines = [line("request queued", job.created_at)]
    if job.status != "queued":
        lines.append(line(f"processing (attempt {max(job.attempts, 1)})" if job.status == "processing"
                          else f"request {job.status}", job.updated_at, "ERROR" if job.status == "failed" else "INFO"))
    return lines


@named_by_request_id
async def result(request: Request, request_id: str) -> Response:
    job = await queued_job(request, request_id)
    if job.status == "completed" and job.result is not None:
        return BlobJSONResponse(job.result)
    if job.status == "failed":
        return JSONResponse(job.error or {"detail": "failed"}, 422)
    if job.status == "cancelled":
        return JSONResponse({"detail": f"request {request_id} was cancelled"}, 400)
    return JSONResponse({"detail": f"request {request_id} is still {STATUS[job.status]}"}, 400)


@named_by_request_id
async def cancel(request: Request, request_id: str) -> Response:
    job = await queued_job(request, request_id)
    if await gateway(request).store.cancel(request_id):
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202)
    return JSONResponse({"status": "ALREADY_COMPLETED" if job.status != "processing" else "IN_PROGRESS"}, 400)


for _op in OPERATIONS:
    _base = f"{QUEUE_PREFIX}/{_op}/requests/{{request_id}}"
    router.add_api_route(f"{_base}/status", status, methods=["GET"], tags=["fal queue"], response_model=FalStatus,
                         summary=f"Status of a queued {_op} request")
    router.add_api_route(_base, result, methods=["GET"], tags=["fal queue"],
                         summary=f"Result of a queued {_op} request (the sync body)")
    router.add_api_route(f"{_base}/cancel", cancel, methods=["PUT"], tags=["fal queue"],
                         summary=f"Cancel a queued {_op} request")
_app_base = f"{APP_QUEUE_PREFIX}/requests/{{request_id}}"
router.add_api_route(f"{_app_base}/status", status, methods=["GET"], include_in_schema=False)
router.add_api_route(_app_base, result, methods=["GET"], include_in_schema=False)
router.add_api_route(f"{_app_base}/cancel", cancel, methods=["PUT"], include_in_schema=False)


async def run_job(job: Job, ports: GatewayPorts) -> dict[str, Any]:
    operation = job.request["operation"]
    body = REQUESTS[operation].model_validate(job.request["input"])
    return await run_task(removal(operation, body, host=True), ports, renderer(body))


def failure_body(job: Job, error: RmbgError) -> dict[str, Any]:
    return error_body(error)


def webhook_body(job: Job) -> dict[str, Any]:
    """fal's webhook body, for a queue request's ``fal_webhook``."""
    ok = job.status == "completed"
    return {"request_id": job.id, "gateway_request_id": job.id, "status": "OK" if ok else "ERROR",
            "payload": job.result if ok else job.error, **({} if ok else {"error": "the request failed"})}


def route_scope(scope: dict) -> dict:
    """fal's clients reach the queue at ``queue.$FAL_RUN_HOST`` and, through a proxy (the JS client's
    ``proxyUrl``), name the real target in ``x-fal-target-url``: both are served as the route they name."""
    headers = dict(scope["headers"])
    target = headers.get(b"x-fal-target-url")
    if target is not None:
        parts = urlsplit(target.decode("latin-1"))
        queued = (parts.hostname or "").startswith("queue.")
        path = parts.path or "/"
        scope = {**scope, "path": path, "raw_path": path.encode(), "query_string": parts.query.encode()}
    else:
        queued = headers.get(b"host", b"").startswith(b"queue.")
    if queued and scope["path"].startswith("/fal-ai/"):
        path = "/queue" + scope["path"]
        scope = {**scope, "path": path, "raw_path": path.encode()}
    return scope
