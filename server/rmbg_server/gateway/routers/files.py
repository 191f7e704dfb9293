"""Hosted outputs at ``/files/{name}``, until their ttl runs out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from rmbg_server.gateway.state import gateway

PREFIX = "/files"
router = APIRouter(tags=["files"])


@router.get(PREFIX + "/{name}", summary="A hosted output, until its ttl expires",
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}, 404: {}})
async def hosted_file(request: Request, name: str) -> Response:
    found = await gateway(request).files.get(name)
    if found is None:
        return JSONResponse({"detail": f"{name[:80]} not found (outputs are deleted after their ttl)"}, 404)
    data, content_type = found
    return Response(data, media_type=content_type, headers={"Cache-Control": "private, max-age=3600"})
