"""HTTP responses every router shares: JSON with spliced-in images, and an error in a protocol's shape.

Each protocol renders an ``RmbgError`` into its own body with one function (in its router); this
module only turns that body into a response with the right status and, for an outage or a limit,
a ``Retry-After``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse

from rmbg_hosted.errors import RmbgError

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

        text = json.dumps(lift(content), ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
        if not blobs:
            return text
        parts = text.split(token.encode())
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            out += [blobs[int(parts[i])], parts[i + 1]]
        return b"".join(out)


def status_of(error: RmbgError, client_status: int) -> int:
    """The HTTP status: the protocol's own for a plain bad request (400 or 422), the error's otherwise."""
    return client_status if error.status == 400 else error.status


def error_response(error: RmbgError, body: dict[str, Any], client_status: int = 400) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after and error.status in (429, 503) else {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="rmbg"'
    return JSONResponse(body, status_of(error, client_status), headers=headers)


# A protocol's error renderer: the error -> its response.
Renderer = Callable[[RmbgError], JSONResponse]
