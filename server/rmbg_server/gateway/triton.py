"""The gateway's way to Triton: asyncio gRPC over one or several endpoints, balanced, with failover.

Endpoints come from ``--triton a:8001,b:8001``; a host name that resolves to several addresses
(a headless Kubernetes Service) counts once per address and is re-resolved as pods come and go.
A background loop checks each endpoint's readiness; requests go to the healthy endpoint with the
fewest requests in flight. When an endpoint goes away before a request produced its result
(connection refused or reset, server shutting down) the request is sent again on another one:
removal is idempotent, so a retry is safe. A model being reloaded after a stub crash is retried
with backoff, like the client library does. Bad input is never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from rmbg_backend.contract import ensemble_name
from rmbg_backend.families import FAMILIES
from rmbg_backend.options import Options
from rmbg_client import AsyncRmbgClient, RemovalResult
from rmbg_client.client import classify_error
from rmbg_hosted.errors import InvalidInputError, ServerUnavailableError
from rmbg_hosted.retry import async_retrying

log = logging.getLogger(__name__)


class NoEndpointError(ServerUnavailableError):
    """No Triton endpoint is healthy right now."""


@dataclass
class Endpoint:
    address: str                     # "ip:port" (or "host:port" when it does not resolve yet)
    source: str                      # the --triton entry it came from
    client: AsyncRmbgClient
    healthy: bool = False
    inflight: int = 0
    failures: int = 0
    models: set[str] = field(default_factory=set)   # ready at the last check
    seen: set[str] = field(default_factory=set)     # ever ready here (a model reloading after a crash stays)
    checked_at: float = 0.0


def _gone(error: Exception) -> bool:
    """The endpoint went away (as opposed to a deadline or a reload): try another endpoint."""
    text = str(error).lower()
    return isinstance(error, ServerUnavailableError) and not getattr(error, "transient", False) and (
        "deadline" not in text and "timed out" not in text)


class TritonPool:
    """Healthy-endpoint balancing and failover over ``AsyncRmbgClient`` (gRPC), one per address."""

    def __init__(self, targets: Iterable[str], *, timeout_s: float = 120.0, check_interval_s: float = 2.0,
                 models: Iterable[str] = tuple(FAMILIES), reload_retries: int = 4,
                 reload_backoff_s: float = 0.5) -> None:
        self.targets = list(targets)  # HOST:PORT each (GatewaySettings.triton checks the form)
        self.timeout_s, self.check_interval_s = timeout_s, check_interval_s
        self.candidate_models = tuple(models)
        self.reload_retries, self.reload_backoff_s = reload_retries, reload_backoff_s
        self.endpoints: dict[str, Endpoint] = {}
        self._task: asyncio.Task | None = None
        self._next = 0

    # -- endpoints ----------------------------------------------------------------------------
    async def _addresses(self, target: str) -> list[str]:
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except socket.gaierror:
            return [target]  # not resolvable now: kept, and unhealthy until it is
        found = []
        for info in infos:
            ip = info[4][0]
            found.append(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
        return list(dict.fromkeys(found))

    async def refresh(self) -> None:
        """Re-resolve the targets, add and drop endpoints, and check every endpoint's readiness."""
        wanted: dict[str, str] = {}
        for target in self.targets:
            for address in await self._addresses(target):
                wanted.setdefault(address, target)
        for address in set(self.endpoints) - set(wanted):
            gone = self.endpoints.pop(address)
            log.warning("Triton endpoint %s (from %s) no longer resolves; dropped", address, gone.source)
            await gone.client.close()
        for address, source in wanted.items():
            if address not in self.endpoints:
                client = AsyncRmbgClient(address, "grpc", timeout=self.timeout_s, retries=0)
                self.endpoints[address] = Endpoint(address, source, client)
        await asyncio.gather(*(self._check(e) for e in list(self.endpoints.values())))

    async def _check(self, endpoint: Endpoint) -> None:
        grpc = endpoint.client._client
        try:
            ready = bool(await grpc.is_server_ready(client_timeout=2.0))
            models = set()
            if ready:
                for model in self.candidate_models:
                    with contextlib.suppress(Exception):
                        if await grpc.is_model_ready(ensemble_name(model), client_timeout=2.0):
                            models.add(model)
        except Exception:  # noqa: BLE001 - any transport error: not healthy
            ready, models = False, set()
        if ready != endpoint.healthy:
            log.log(logging.INFO if ready else logging.WARNING, "Triton endpoint %s is %s", endpoint.address,
                    "healthy" if ready else "not healthy")
        endpoint.healthy, endpoint.models, endpoint.checked_at = ready, models, time.monotonic()
        endpoint.seen |= models

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="triton-health")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the health loop must never die
                log.exception("Triton health check failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for endpoint in self.endpoints.values():
            await endpoint.client.close()
        self.endpoints.clear()

    # -- state ------------------------------------------------------------------------------
    def healthy(self) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.healthy]

    def served_models(self) -> set[str]:
        """Models that healthy endpoints serve (or served, and are reloading after a crash)."""
        return set().union(*(e.seen for e in self.healthy()))

    def known_models(self) -> set[str]:
        """Models any endpoint ever served, healthy now or not: one missing now is an outage, not a typo."""
        return set().union(*(e.seen for e in self.endpoints.values()))

    def _pick(self, model: str, exclude: set[str]) -> Endpoint | None:
        live = [e for e in self.healthy() if e.address not in exclude]
        candidates = [e for e in live if model in e.models] or [e for e in live if model in e.seen]
        if not candidates:
            return None
        self._next += 1  # round-robin among the least loaded
        least = min(e.inflight for e in candidates)
        tied = [e for e in candidates if e.inflight == least]
        return tied[self._next % len(tied)]

    # -- inference --------------------------------------------------------------------------
    async def remove(self, model: str, image: bytes, options: Options | None = None,
                     background: bytes | None = None) -> RemovalResult:
        """One removal on a healthy endpoint; another endpoint takes over if this one goes away, and a
        model being reloaded after a crash is waited for (bounded backoff)."""
        reloading = async_retrying(self.reload_retries + 1, self.reload_backoff_s, 8.0,
                                   on_error=lambda e: isinstance(e, ServerUnavailableError) and e.transient)
        return await reloading(self._failover, model, image, options, background)

    async def _failover(self, model: str, image: bytes, options: Options | None,
                        background: bytes | None) -> RemovalResult:
        tried: set[str] = set()
        last: Exception | None = None
        while (endpoint := self._pick(model, tried)) is not None:
            endpoint.inflight += 1
            try:
                return await endpoint.client.remove(image, options, background, model=model)
            except InvalidInputError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                error = classify_error(exc)
                if not _gone(error):
                    raise error from exc
                last = error
                endpoint.healthy = False  # until the next check says otherwise
                endpoint.failures += 1
                tried.add(endpoint.address)
                log.warning("Triton endpoint %s failed a request (%s); retrying on another endpoint",
                            endpoint.address, str(error)[:200])
            finally:
                endpoint.inflight -= 1
        if last is not None:
            raise last
        raise NoEndpointError(f"no healthy Triton endpoint serves {ensemble_name(model)} "
                              f"(endpoints: {', '.join(self.endpoints) or 'none'})")
