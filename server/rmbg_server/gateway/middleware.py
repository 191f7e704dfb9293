"""Pure ASGI middleware (cheap): per-route metrics, API keys with per-key rate limits, the body size cap,
and, without keys, the guard that keeps web pages from driving the gateway.

Its refusals are errors of the one model, rendered by the protocol the path belongs to (each router
registers its prefix and renderer), so a fal client gets fal's shape and a task client Runware's.
The caller's tenant (the key's id, never the key) is put in the request scope for the routes.

A keyless gateway listens on loopback only, but a browser on the same machine can still reach it:
a page may POST a ``text/plain`` body cross-site without asking, or rebind its own host name to
127.0.0.1. So without keys the gateway takes JSON bodies only, answers only to its own host names
(the bind address, ``localhost``, ``--public-url``'s host) and to no foreign ``Origin``.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from rmbg_hosted.errors import AuthError, BusyError, InvalidInputError, RmbgError, TooLargeError
from rmbg_server.gateway.responses import Renderer
from rmbg_server.gateway.state import Gateway

log = logging.getLogger(__name__)
PUBLIC_PATHS = ("/healthz", "/readyz", "/", "/favicon.ico")
HEALTH_PATHS = ("/healthz", "/readyz")  # probes: answered whatever Host they name
PUBLIC_PREFIXES = ("/static/", "/files/")  # hosted outputs are signed capabilities (routers/files.py)
Shapes = Sequence[tuple[str, Renderer]]  # (path prefix, renderer), longest prefix first
Rewrite = Callable[[dict], dict]  # a protocol's own way of naming a route (fal's queue host), to its path


class GatewayMiddleware:
    def __init__(self, app: Callable, gateway: Gateway, shapes: Shapes, fallback: Renderer,
                 rewrites: Sequence[Rewrite] = (), form_paths: Sequence[str] = ()) -> None:
        self.app, self.gw = app, gateway
        self.form_paths = tuple(form_paths)  # routes whose APIs send forms (remove.bg, OpenAI's images, ...)
        self.shapes = sorted(shapes, key=lambda item: -len(item[0]))
        self.fallback = fallback
        self.rewrites = tuple(rewrites)
        self.own_hosts = own_hosts(gateway.settings.host, gateway.settings.public_url)

    def render(self, path: str, error: RmbgError) -> Response:
        for prefix, renderer in self.shapes:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return renderer(error)
        return self.fallback(error)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "websocket":
            await self._socket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        for rewrite in self.rewrites:
            scope = rewrite(scope)

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        keyless = not self.gw.keys.enabled
        json_body = b"json" in dict(scope["headers"]).get(b"content-type", b"")
        if scope["method"] in ("POST", "PUT") and not json_body and not keyless and not self.takes_forms(scope):
            # Every body here is JSON; curl -d without a Content-Type says form data. Read it as JSON.
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                     + [(b"content-type", b"application/json")]}
        try:
            refusal = self._browser_refusal(scope, json_body) if keyless else self._refusal(scope)
            if refusal is None:
                receive, refusal = await self._capped(scope, receive)
            if refusal is not None:
                await self.render(scope["path"], refusal)(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        except ClientDisconnect:  # the caller went away mid-body: nothing to answer, nothing to report
            log.info("%s %s: the client disconnected before its body arrived", scope["method"], scope["path"])
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.gw.metrics.requests.labels(route, scope["method"], str(status[0])).inc()
            self.gw.metrics.latency.labels(route, scope["method"]).observe(time.perf_counter() - started)

    def takes_forms(self, scope: dict) -> bool:
        return scope["path"] in self.form_paths

    async def _socket(self, scope: dict, receive: Callable, send: Callable) -> None:
        """WebSockets authenticate in their first frame (routers/sockets.py); without keys, a page of
        another origin may not open one (cross-site WebSocket hijacking)."""
        refusal = self._browser_refusal(scope, json_body=True) if not self.gw.keys.enabled else None
        if refusal is not None:
            log.info("WebSocket %s refused: %s", scope["path"], refusal)
            await send({"type": "websocket.close", "code": 4003, "reason": refusal.code})
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: dict) -> RmbgError | None:
        path = scope["path"]
        keys = self.gw.keys
        if not keys.enabled or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        if not authorization and b"x-api-key" in headers:  # remove.bg, Photoroom and Clipdrop send the key so
            authorization = "Key " + headers[b"x-api-key"].decode("latin-1")
        key_id = keys.identify(authorization)
        if key_id is None:
            return AuthError("missing or unknown API key: send Authorization: Bearer KEY (or Key KEY, or X-Api-Key: "
                             "KEY)")
        scope.setdefault("state", {})["tenant"] = key_id
        wait = keys.take(key_id)
        if wait:
            self.gw.metrics.rejected.labels("rate").inc()
            return BusyError(f"rate limit of this API key reached ({keys.rate_per_s:g} requests/s, burst "
                             f"{keys.burst}); retry after {wait:.2f} s", code="rateLimited",
                             retry_after=max(1, math.ceil(wait)))
        return None

    def _browser_refusal(self, scope: dict, json_body: bool) -> RmbgError | None:
        """Without keys: only this gateway's own host names, no foreign Origin, JSON bodies only."""
        if scope["path"] in HEALTH_PATHS:
            return None
        headers = dict(scope["headers"])
        site = headers.get(b"sec-fetch-site", b"none").decode("latin-1")
        if site not in ("same-origin", "none"):  # a browser says where a request comes from: not from here
            return InvalidInputError(f"requests from other sites ({site}) are refused: without API keys only this "
                                     "gateway's own pages may call it", code="forbiddenOrigin", parameter="Origin",
                                     status=403)
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        if host not in self.own_hosts:
            return InvalidInputError(f"this gateway answers to {', '.join(sorted(self.own_hosts))}, not to Host "
                                     f"{host[:100]!r}; without API keys it refuses other names (a page rebinding "
                                     "its own name to this machine)", code="forbiddenHost", parameter="Host",
                                     status=403)
        origin = headers.get(b"origin")
        if origin is not None and host_name(urlsplit(origin.decode("latin-1")).netloc) not in self.own_hosts:
            return InvalidInputError(f"requests from web pages of {origin.decode('latin-1')[:100]!r} are refused: "
                                     "without API keys only this gateway's own pages may call it (set --api-key "
                                     "to serve other origins)", code="forbiddenOrigin", parameter="Origin",
                                     status=403)
        has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
        form = headers.get(b"content-type", b"").split(b";")[0].strip() in (b"multipart/form-data",
                                                                          b"application/x-www-form-urlencoded")
        if scope.get("method") in ("POST", "PUT", "PATCH") and has_body and not json_body and not (
                form and self.takes_forms(scope)):
            return InvalidInputError("must be sent as Content-Type: application/json (without API keys no other "
                                     "body type is taken, so a web page cannot post a form here)",
                                     code="unsupportedMediaType", parameter="Content-Type", status=415)
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


def host_name(host: str) -> str:
    """``[::1]:8080`` -> ``::1``; ``Localhost:80`` -> ``localhost``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def own_hosts(bind: str, public_url: str | None) -> frozenset[str]:
    """The names this gateway answers to: its bind address, loopback's names, --public-url's host."""
    names = {host_name(bind), "localhost"}
    try:
        if ipaddress.ip_address(host_name(bind)).is_loopback:
            names |= {"127.0.0.1", "::1"}
    except ValueError:
        pass
    if public_url:
        names.add(host_name(urlsplit(public_url).netloc))
    return frozenset(names | {f"queue.{name}" for name in names})  # fal's clients call queue.$FAL_RUN_HOST
