"""Operations: liveness, readiness, Prometheus metrics, and the OpenAPI page served from our own assets."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from rmbg_server.gateway.state import gateway

ASSETS = "/static/swagger-ui"  # vendored swagger-ui-dist (static/swagger-ui/README.md): no CDN, works offline
router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: a Triton endpoint answers")
async def readyz(request: Request) -> Response:
    pool = gateway(request).pool
    healthy = pool.healthy()
    body = {"status": "ready" if healthy else "not ready", "endpoints": {
        e.address: "healthy" if e.healthy else "unhealthy" for e in pool.endpoints.values()},
        "models": sorted(pool.served_models())}
    return JSONResponse(body, 200 if healthy else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    gw = gateway(request)
    return Response(await gw.render_metrics(), media_type=gw.metrics.content_type)


@router.get("/docs", include_in_schema=False)
async def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=request.app.openapi_url, title=f"{request.app.title} - API",
                               swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{ASSETS}/favicon-32x32.png")
