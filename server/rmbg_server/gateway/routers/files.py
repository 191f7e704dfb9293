"""Hosted outputs at ``/files/{expires}/{signature}/{name}``: public capabilities until their ttl runs out.

No API key is needed (an ``<img>``, ``requests.get``): the signed URL is the access
(``files/signing.py``). A name without a valid signature, or past its expiry, is 404.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from rmbg_server.gateway.files.signing import valid
from rmbg_server.gateway.state import gateway

PREFIX = "/files"
router = APIRouter(tags=["files"])


@router.get(PREFIX + "/{expires}/{signature}/{name}", summary="A hosted output, until its ttl expires",
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}, 404: {}})
async def hosted_file(request: Request, expires: str, signature: str, name: str) -> Response:
    gw = gateway(request)
    found = await gw.files.get(name) if valid(gw.signing_key, name, expires, signature) else None
    if found is None:
        return JSONResponse({"detail": f"{name[:80]} not found (outputs are deleted after their ttl)"}, 404)
    data, content_type = found
    max_age = max(0, min(3600, int(expires) - int(time.time())))  # a cache must not outlive the URL
    return Response(data, media_type=content_type, headers={"Cache-Control": f"private, max-age={max_age}",
                                                             "X-Content-Type-Options": "nosniff"})
