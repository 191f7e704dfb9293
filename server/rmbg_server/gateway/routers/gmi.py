"""GMI Cloud's request queue (hosted-API document 004): a thin adapter over the flow.

``POST`` queues a removal and answers its ``request_id``; ``GET .../{request_id}`` answers its status
and, once done, ``outcome.media_urls``. Errors: ``{"error": {"code", "message", "parameter"}}``.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from rmbg_backend.options import Options
from rmbg_hosted.errors import RmbgError
from rmbg_hosted.flow import Fields, Removal, run_task
from rmbg_server.gateway.jobs import Job
from rmbg_server.gateway.ports import GatewayPorts
from rmbg_server.gateway.responses import error_response
from rmbg_server.gateway.state import gateway, ports_of

PATH = "/api/v1/ie/requestqueue/apikey/requests"
PROTOCOL = "gmi"
_STRICT = ConfigDict(extra="forbid", strict=True)
router = APIRouter(tags=["GMI queue"])


class GmiPayload(BaseModel):
    model_config = _STRICT
    image: str = Field(description="Input image: an http(s) URL or base64 (JPEG or PNG)")


class GmiRequest(BaseModel):
    model_config = _STRICT
    model: str = Field(description="bria-image-remove-background, or any model alias")
    payload: GmiPayload


class GmiSubmitted(BaseModel):
    request_id: str
    status: Literal["queued", "processing", "success", "failed", "cancelled"]


class GmiOutcome(BaseModel):
    media_urls: list[str]


class GmiStatus(BaseModel):
    request_id: str
    model: str
    status: Literal["queued", "processing", "success", "failed", "cancelled"]
    outcome: GmiOutcome | None = None
    error: dict[str, Any] | None = None
    created_at: float | None = None
    updated_at: float | None = None


STATUS = {"queued": "queued", "processing": "processing", "completed": "success", "failed": "failed",
          "cancelled": "cancelled"}


def error_body(error: RmbgError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "parameter": error.parameter}}


def render_error(error: RmbgError) -> JSONResponse:
    """The one rendering of an error for GMI."""
    return error_response(error, error_body(error))


def removal(request: GmiRequest) -> Removal:
    return Removal(model=request.model, image=request.payload.image, options=Options(),
                   fields=Fields(image="payload.image", model="model"), host=True)


@router.post(PATH, response_model=GmiSubmitted, summary="Queue a background removal")
async def submit(request: Request, body: GmiRequest) -> Response:
    gw = gateway(request)
    ports = ports_of(request)
    try:
        kept, blobs = await ports.accept(removal(body))  # a forbidden URL or a bad model: refused now
        stored = body.model_dump() | {"payload": {"image": kept.image}}
        request_id = uuid.uuid4().hex
        await gw.submit(Job(id=request_id, protocol=PROTOCOL, request=stored, ttl_s=gw.settings.ttl,
                            tenant=ports.tenant, blobs=blobs))
    except RmbgError as exc:
        return render_error(exc)
    return JSONResponse({"request_id": request_id, "status": "queued"})


@router.get(PATH + "/{request_id}", response_model=GmiStatus, response_model_exclude_none=True,
            summary="Status and, once done, outcome.media_urls")
async def status(request: Request, request_id: str) -> Response:
    ports = ports_of(request)
    try:
        job = await ports.job(request_id, PROTOCOL, parameter="request_id")
    except RmbgError as exc:
        return render_error(exc)
    body = GmiStatus(request_id=request_id, model=job.request.get("model", ""), status=STATUS[job.status],
                     outcome=job.result if job.status == "completed" else None,
                     error=(job.error or {}).get("error", job.error) if job.status == "failed" else None,
                     created_at=job.created_at, updated_at=job.updated_at)
    return JSONResponse(body.model_dump(exclude_none=True))


async def run_job(job: Job, ports: GatewayPorts) -> dict[str, Any]:
    request = GmiRequest.model_validate(job.request)
    return await run_task(removal(request), ports, lambda output: {"media_urls": [output.url]})


def failure_body(job: Job, error: RmbgError) -> dict[str, Any]:
    return error_body(error)


def webhook_body(job: Job) -> dict[str, Any]:
    return {"request_id": job.id, "status": STATUS[job.status], "outcome": job.result, "error": job.error}
