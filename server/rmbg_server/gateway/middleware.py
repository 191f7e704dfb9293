"""Pure ASGI middleware (cheap): per-route metrics, API keys with per-key rate limits, the body size cap.

Its refusals are errors of the one model, rendered by the protocol the path belongs to (each router
registers its prefix and renderer), so a fal client gets fal's shape and a task client Runware's.
The caller's tenant (the key's id, never the key) is put in the request scope for the routes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from starlette.responses import Response

from rmbg_hosted.errors import AuthError, BusyError, RmbgError, TooLargeError
from rmbg_server.gateway.responses import Renderer
from rmbg_server.gateway.state import Gateway

PUBLIC_PATHS = ("/healthz", "/readyz", "/", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
Shapes = Sequence[tuple[str, Renderer]]  # (path prefix, renderer), longest prefix first


class GatewayMiddleware:
    def __init__(self, app: Callable, gateway: Gateway, shapes: Shapes, fallback: Renderer) -> None:
        self.app, self.gw = app, gateway
        self.shapes = sorted(shapes, key=lambda item: -len(item[0]))
        self.fallback = fallback

    def render(self, path: str, error: RmbgError) -> Response:
        for prefix, renderer in self.shapes:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return renderer(error)
        return self.fallback(error)

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
                await self.render(scope["path"], refusal)(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.gw.metrics.requests.labels(route, scope["method"], str(status[0])).inc()
            self.gw.metrics.latency.labels(route, scope["method"]).observe(time.perf_counter() - started)

    def _refusal(self, scope: dict) -> RmbgError | None:
        path = scope["path"]
        keys = self.gw.keys
        if not keys.enabled or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        headers = dict(scope["headers"])
        key_id = keys.identify(headers.get(b"authorization", b"").decode("latin-1"))
        if key_id is None:
            return AuthError("missing or unknown API key: send Authorization: Bearer KEY (or Key KEY)")
        scope.setdefault("state", {})["tenant"] = key_id
        wait = keys.take(key_id)
        if wait:
            self.gw.metrics.rejected.labels("rate").inc()
            return BusyError(f"rate limit of this API key reached ({keys.rate_per_s:g} requests/s, burst "
                             f"{keys.burst}); retry after {wait:.2f} s", code="rateLimited",
                             retry_after=max(1, math.ceil(wait)))
        return None

    async def _capped(self, scope: dict, receive: Callable) -> tuple[Callable, RmbgError | None]:
        """Refuse a body over ``max_body_bytes`` before the app reads it (declared or streamed)."""
        limit = self.gw.settings.max_body_bytes
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        too_large = TooLargeError(f"is over the {limit:,}-byte limit; send large images by URL", parameter="body")
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
