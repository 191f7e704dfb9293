"""WebSocket sessions: what outlives one socket, so a client that reconnects gets its results.

Runware's SDKs authenticate with a ``connectionSessionUUID`` when they reconnect. A task still running
when its socket dropped sends its frame into the session; the frames wait there (bounded) until a
socket of the same tenant resumes the session, or until ``ttl_s`` passes with no socket. Sessions live
in the replica that holds them: a client resuming on another replica gets a new session (the async
tasks' results stay available through ``getResponse`` on any replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
Sender = Callable[[dict[str, Any]], Awaitable[None]]
MAX_WAITING = 256  # frames kept for a dropped socket; older ones go first


@dataclass
class Session:
    id: str
    tenant: str | None
    sender: Sender | None = None
    waiting: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_WAITING))
    detached_at: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, frame: dict[str, Any]) -> None:
        """Send now, or keep for the socket that resumes this session."""
        async with self.lock:
            if self.sender is not None:
                try:
                    await self.sender(frame)
                    return
                except Exception:  # noqa: BLE001 - the socket went away mid-send: keep the frame
                    self.detach_locked()
            self.waiting.append(frame)

    async def attach(self, sender: Sender) -> None:
        """A socket takes the session over and gets every frame kept for it, in order."""
        async with self.lock:
            self.sender, self.detached_at = sender, None
            while self.waiting:
                frame = self.waiting.popleft()
                try:
                    await sender(frame)
                except Exception:  # noqa: BLE001
                    self.waiting.appendleft(frame)
                    self.detach_locked()
                    return

    def detach_locked(self) -> None:
        self.sender, self.detached_at = None, time.monotonic()

    async def detach(self, sender: Sender) -> None:
        async with self.lock:
            if self.sender is sender:  # not when another socket resumed it meanwhile
                self.detach_locked()


class Sessions:
    """This replica's sessions, and the number of open sockets per tenant."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._sessions: dict[str, Session] = {}
        self._open: dict[str | None, int] = {}

    def open(self, tenant: str | None, wanted: str | None) -> Session:
        """Resume ``wanted`` when it is this tenant's and alive; otherwise a new session."""
        self.expire()
        found = self._sessions.get(wanted or "")
        if found is not None and found.tenant == tenant:
            return found
        session = Session(str(uuid.uuid4()), tenant)
        self._sessions[session.id] = session
        return session

    def expire(self) -> None:
        now = time.monotonic()
        for key, session in list(self._sessions.items()):
            if session.sender is None and session.detached_at is not None and now - session.detached_at > self.ttl_s:
                del self._sessions[key]
                if session.waiting:
                    log.info("WebSocket session %s expired with %d undelivered frames", key, len(session.waiting))

    @contextlib.contextmanager
    def counted(self, tenant: str | None, limit: int):
        """One open socket of ``tenant``; False inside when the tenant already has ``limit`` open."""
        full = self._open.get(tenant, 0) >= limit
        if not full:
            self._open[tenant] = self._open.get(tenant, 0) + 1
        try:
            yield not full
        finally:
            if not full:
                self._open[tenant] -= 1
