"""Runware's WebSocket on ``/v1`` (beside POST): the same tasks, errors and jobs, one frame per result.

The conversation, as Runware's SDKs hold it (runware-sdk, runware, @runware/sdk-js):
  client  [{"taskType": "authentication", "apiKey": K, "connectionSessionUUID": U?}]
  server  {"data": [{"taskType": "authentication", "connectionSessionUUID": U}]}
  client  [{"taskType": "ping", "ping": true}]          server  {"data": [{"taskType": "ping", "pong": true}]}
  client  [task, task, ...]                               server  {"data": [result]} | {"errors": [error]}, one
                                                                  frame per task, as each finishes
A bad key gets an ``errors`` frame, then close code 4001 unless the client closes first (within
CLOSE_GRACE_S); too many sockets for one key, 4008. A task
still running when its socket drops answers into its session, which a reconnect with the same
``connectionSessionUUID`` resumes (``sessions.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from rmbg_hosted.errors import AuthError, BusyError, InvalidInputError, RmbgError
from rmbg_hosted.tasks import handle_task, task_error
from rmbg_server.gateway.ports import GatewayPorts
from rmbg_server.gateway.responses import BlobJSONResponse
from rmbg_server.gateway.routers.tasks import PATH, PROTOCOL, parse_json
from rmbg_server.gateway.sessions import Session
from rmbg_server.gateway.state import Gateway

log = logging.getLogger(__name__)
router = APIRouter()
AUTH_TIMEOUT_S = 30.0
CLOSE_GRACE_S = 5.0  # a refused client's time to close first (close_with)
CLOSE_BAD_KEY, CLOSE_TOO_MANY = 4001, 4008
AUTH = "authentication"


def frame_text(frame: dict[str, Any]) -> str:
    return BlobJSONResponse(None).render(frame).decode("utf-8")  # base64 results spliced in, not escaped


def refused(error: RmbgError, task_type: str | None = None) -> dict[str, Any]:
    return {"errors": [task_error(error, None, task_type)]}


async def authenticate(ws: WebSocket, gw: Gateway) -> tuple[str | None, str | None] | None:
    """(tenant, wanted session) from the first frame; None after refusing it (and closing)."""
    try:
        raw = await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT_S)
        message = parse_json(raw.encode())
    except (TimeoutError, InvalidInputError) as exc:
        reason = exc if isinstance(exc, RmbgError) else InvalidInputError(
            f"no authentication frame within {AUTH_TIMEOUT_S:g} s", parameter="apiKey")
        await close_with(ws, refused(reason, AUTH), CLOSE_BAD_KEY)
        return None
    first = message[0] if isinstance(message, list) and message else message
    if not isinstance(first, dict) or first.get("taskType") != AUTH:
        await close_with(ws, refused(InvalidInputError("the first frame must be [{\"taskType\": "
                                                       "\"authentication\", \"apiKey\": KEY}]",
                                                       parameter="taskType"), AUTH), CLOSE_BAD_KEY)
        return None
    key = first.get("apiKey")
    tenant = gw.keys.identify(f"Bearer {key}") if isinstance(key, str) else None
    if gw.keys.enabled and tenant is None:
        await close_with(ws, refused(AuthError("missing or unknown API key", parameter="apiKey"), AUTH),
                         CLOSE_BAD_KEY)
        return None
    wanted = first.get("connectionSessionUUID")
    return tenant, wanted if isinstance(wanted, str) else None


async def close_with(ws: WebSocket, frame: dict[str, Any], code: int) -> None:
    """Send the refusal, let the client close within CLOSE_GRACE_S, then close with ``code``.

    Closing at once breaks runware 0.5: it takes the close for a dropped line and reconnects while its
    ``connect()`` still waits on the replaced socket, forever. Given the refusal and an open socket,
    it raises to its caller and closes (within about 1 s); other clients close at once.
    """
    with contextlib.suppress(Exception):
        await ws.send_text(frame_text(frame))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_until_closed(ws), CLOSE_GRACE_S)
        await ws.close(code)


async def _until_closed(ws: WebSocket) -> None:
    """Read and drop what a refused client still sends, until it closes."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass


async def run_one(gw: Gateway, ports: GatewayPorts, session: Session, item: Any) -> None:
    """One task: admitted like POST's, answered into the session (this socket, or the one that resumes it)."""
    runs_now = isinstance(item, dict) and item.get("deliveryMethod") != "async" and str(
        item.get("taskType")).endswith(("removeBackground", "BackgroundRemoval"))
    try:
        with gw.admit(1 if runs_now else 0):
            body, error = await handle_task(item, ports)
    except BusyError as exc:
        identity = item if isinstance(item, dict) else {}
        body, error = task_error(exc, identity.get("taskUUID"), identity.get("taskType")), exc
    gw.metrics.tasks.labels(PROTOCOL, "failed" if error else "completed").inc()
    await session.send({"errors": [body]} if error else {"data": [body]})


async def serve(ws: WebSocket, gw: Gateway, session: Session, ports: GatewayPorts) -> None:
    while True:
        try:
            message = parse_json((await ws.receive_text()).encode())
        except InvalidInputError as exc:
            await session.send(refused(exc))
            continue
        for item in message if isinstance(message, list) else [message]:
            task_type = item.get("taskType") if isinstance(item, dict) else None
            if task_type == "ping":
                await session.send({"data": [{"taskType": "ping", "pong": True}]})
            elif task_type == AUTH:  # already authenticated: confirm the session again
                await session.send({"data": [{"taskType": AUTH, "connectionSessionUUID": session.id}]})
            elif gw.keys.enabled and (wait := gw.keys.take(ports.tenant or "")):
                busy = BusyError(f"rate limit of this API key reached; retry after {wait:.2f} s", code="rateLimited")
                await session.send({"errors": [task_error(busy, item.get("taskUUID") if isinstance(item, dict)
                                                          else None, task_type)]})
            else:
                gw.spawn(run_one(gw, ports, session, item))


@router.websocket(PATH)
async def task_socket(ws: WebSocket) -> None:
    gw: Gateway = ws.app.state.gateway
    await ws.accept()
    who = await authenticate(ws, gw)
    if who is None:
        return
    tenant, wanted = who
    with gw.sessions.counted(tenant, gw.settings.ws_per_key) as admitted:
        if not admitted:
            await close_with(ws, refused(BusyError(f"this API key has {gw.settings.ws_per_key} WebSockets open, the "
                                                   "limit (--ws-per-key)", code="tooManyConnections"), AUTH),
                             CLOSE_TOO_MANY)
            return
        session = gw.sessions.open(tenant, wanted)

        async def sender(frame: dict[str, Any]) -> None:
            await ws.send_text(frame_text(frame))

        await sender({"data": [{"taskType": AUTH, "connectionSessionUUID": session.id}]})
        await session.attach(sender)
        try:
            await serve(ws, gw, session, GatewayPorts(gw, tenant))
        except WebSocketDisconnect:
            log.debug("WebSocket session %s: the socket closed", session.id)
        finally:
            await session.detach(sender)

