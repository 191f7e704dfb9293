"""The gateway app: one router per protocol over one state, one middleware, one OpenAPI document.

``create_app(settings)`` wires them; ``rmbg gateway`` runs it with uvicorn. Startup opens the job
and file stores (SQLite + files in ``--data-dir``, or Redis), connects the Triton pool and starts
the job runner (async tasks, the fal queue and the GMI queue); shutdown stops them.

Limits, in the order a request meets them: API key and its token bucket (401/429), body size
(413), then for work that runs now the in-flight bound (``--max-inflight``, 429 + Retry-After)
and for queued work the queue bound (``--max-queued``, 429 + Retry-After). An outage of the
inference service is a 503 with Retry-After, in the protocol's own shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from rmbg_hosted.errors import InvalidInputError, RmbgError
from rmbg_server.gateway.middleware import GatewayMiddleware
from rmbg_server.gateway.responses import error_response
from rmbg_server.gateway.routers import (
    clipdrop,
    fal,
    files,
    gmi,
    openai,
    operations,
    photoroom,
    playground,
    rembg,
    removebg,
    sockets,
    tasks,
)
from rmbg_server.gateway.settings import GatewaySettings
from rmbg_server.gateway.state import Gateway

PROTOCOLS = (tasks, fal, gmi)  # each: router, render_error, and for its queued work PROTOCOL, run_job, ...
IMAGE_APIS = (removebg, photoroom, clipdrop, rembg, openai)  # each answers with the image itself
ERROR_SHAPES = ((tasks.PATH, tasks.render_error), (fal.PREFIX, fal.render_error),
                (fal.APP_QUEUE_PREFIX, fal.render_error), (gmi.PATH, gmi.render_error),
                (removebg.PATH, removebg.render_error), (removebg.ACCOUNT, removebg.render_error),
                (photoroom.V1, photoroom.render_error), (photoroom.V2, photoroom.render_error),
                (clipdrop.PATH, clipdrop.render_error), (rembg.PATH, rembg.render_error),
                (openai.EDITS, openai.render_error), (openai.MODELS, openai.render_error))
FORM_PATHS = (removebg.PATH, photoroom.V1, photoroom.V2, clipdrop.PATH, rembg.PATH, openai.EDITS)


def _plain(error: RmbgError) -> JSONResponse:
    """Paths of no protocol (/files, /docs, /metrics): FastAPI's own ``{"detail"}``."""
    return error_response(error, {"detail": str(error)})


def _invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A body the route's model refused: GMI's shape for GMI, FastAPI's (fal's) otherwise, never quoting an image."""
    errors = exc.errors()
    if request.url.path.startswith(gmi.PATH):
        first = errors[0] if errors else {"loc": (), "msg": "invalid body", "type": "invalid"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return gmi.render_error(InvalidInputError(first["msg"], code=first["type"], parameter=where))
    for e in errors:
        if e.get("loc", ())[-1:] in (("image_url",), ("ref_image_url",), ("image",)):
            e.pop("input", None)
    return JSONResponse({"detail": jsonable_encoder(errors)}, 422)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the task array's body schema (the route reads its body itself)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    body = TypeAdapter(tasks.TaskBody).json_schema(ref_template="#/components/schemas/{model}")
    schema.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs", {}))
    schema["paths"][tasks.PATH]["post"]["requestBody"] = {
        "required": True, "content": {"application/json": {"schema": body}}}
    app.openapi_schema = schema
    return schema


def create_app(settings: GatewaySettings) -> FastAPI:
    gw = Gateway(settings, protocols={p.PROTOCOL: p for p in PROTOCOLS})  # type: ignore[misc]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(title="rmbg gateway", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="The background-removal APIs people already call (Runware task arrays and WebSocket, "
                              "fal, GMI queue, remove.bg, Photoroom, Clipdrop, rembg's server, OpenAI-style images) "
                              "served by your own Triton. Authenticate with `Authorization: Bearer KEY`, `Key KEY` or "
                              "`X-Api-Key: KEY`.")
    app.state.gateway = gw
    app.add_middleware(GatewayMiddleware, gateway=gw, shapes=ERROR_SHAPES, fallback=_plain,
                       rewrites=(fal.route_scope,), form_paths=FORM_PATHS)
    app.add_exception_handler(RequestValidationError, _invalid_body)  # type: ignore[arg-type]
    for router in (*(p.router for p in (*PROTOCOLS, *IMAGE_APIS)), sockets.router, files.router, operations.router):
        app.include_router(router)
    playground.mount(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
