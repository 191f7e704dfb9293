"""Client for ``rmbg_<model>`` ensembles: one call per image, many images with bounded concurrency.

gRPC is the default (binary framing, no base64); HTTP is there for proxies that only pass
HTTP/1.1. Errors are typed so callers can tell their own bad input from a server problem.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np

from rmbg_backend.contract import (
    BACKGROUND,
    ENSEMBLE_OUTPUTS,
    EXTENSIONS,
    IMAGE,
    IMAGE_OUT,
    INFO,
    OPTIONS,
    ensemble_name,
    parse_wire_error,
)
from rmbg_backend.options import Options
from rmbg_client.hosted import ClientTasks
from rmbg_client.images import to_image_bytes, to_image_bytes_async
from rmbg_hosted.errors import InvalidInputError, RmbgError, ServerError, ServerUnavailableError
from rmbg_hosted.fetch import DEFAULT_POLICY, FetchPolicy, run_sync
from rmbg_hosted.inputs import to_base64, to_data_uri
from rmbg_hosted.retry import async_retrying, retrying
from rmbg_hosted.tasks import execute_task


@dataclass
class RemovalResult:
    data: bytes
    info: dict[str, Any]

    @property
    def content_type(self) -> str:
        return self.info.get("contentType", "application/octet-stream")

    def to_pil(self):
        import io

        from PIL import Image

        image = Image.open(io.BytesIO(self.data))
        image.load()
        return image

    def to_base64(self) -> str:
        return to_base64(self.data)

    def to_data_uri(self) -> str:
        return to_data_uri(self.data, self.content_type)

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.content_type, "bin")


_UNAVAILABLE_HINTS = ("failed to connect", "connection refused", "unavailable", "is not ready",
                      "deadline exceeded", "timed out", "connection reset")
# A model being reloaded by the watchdog after its stub died: transient, retried.
_RELOADING_HINTS = ("is not healthy", "has no available versions", "request for unknown model")


def classify_error(exc: Exception) -> RmbgError:
    """A tritonclient exception (gRPC or HTTP) -> the typed error a caller can act on.

    A step's refusal carries its field and code (``contract.wire_error``); anything else is told
    apart by Triton's status and words.
    """
    if isinstance(exc, RmbgError):
        return exc
    text = str(exc)
    wire = parse_wire_error(text)
    if wire is not None:
        return InvalidInputError(wire.message, code=wire.code, parameter=wire.field)
    status = getattr(exc, "status", lambda: None)()
    lowered = text.lower()
    if "invalid_arg" in lowered or status in ("StatusCode.INVALID_ARGUMENT", "400"):
        return InvalidInputError(text)
    if any(h in lowered for h in _RELOADING_HINTS):
        return ServerUnavailableError(text, transient=True)
    if any(h in lowered for h in _UNAVAILABLE_HINTS) or isinstance(exc, ConnectionError | OSError):
        return ServerUnavailableError(text)
    return ServerError(text)


def _options_json(options: Options | dict[str, Any] | str | bytes | None) -> bytes:
    """The OPTIONS tensor: typed Options render themselves; dicts and JSON text go as given (Triton checks)."""
    if options is None:
        return b"{}"
    if isinstance(options, Options):
        return options.to_json().encode()
    if isinstance(options, bytes):
        return options
    if isinstance(options, str):
        return options.encode()
    return json.dumps(options).encode()


def _transient(error: BaseException) -> bool:
    """A model being reloaded after a crash: the one failure worth sending again (removal is idempotent)."""
    return isinstance(error, ServerUnavailableError) and error.transient


def build_request(mod: Any, image: bytes, options: Any, background: bytes | None):
    """Inputs/outputs for ``mod`` (tritonclient.grpc, .http or their .aio variants)."""
    tensors = [(IMAGE, image), (OPTIONS, _options_json(options))]
    if background is not None:
        tensors.append((BACKGROUND, background))
    inputs = []
    for name, value in tensors:
        t = mod.InferInput(name, [1, 1], "BYTES")
        t.set_data_from_numpy(np.array([[value]], dtype=np.object_))
        inputs.append(t)
    return inputs, [mod.InferRequestedOutput(n) for n in ENSEMBLE_OUTPUTS]


class _Base:
    """What both clients share: settings, retries, timeouts, request building and input coercion.

    ``timeout`` is one client-side deadline per attempt in seconds (gRPC ``client_timeout``, HTTP
    network timeout); it is never sent to Triton, whose own ``timeout`` is a server-side queue
    limit in microseconds. ``retries``: how often a request is re-sent when the server reports a
    model being reloaded after a crash (bounded exponential backoff; removal is idempotent). Bad
    input is never retried. ``fetch_policy``: the rules for URL inputs and upload endpoints
    (``rmbg_hosted.fetch``): loopback and private addresses need an explicit allow-list.
    """

    def __init__(self, url: str = "127.0.0.1:8001", protocol: str = "grpc", model: str = "isnet",
                 timeout: float = 300.0, retries: int = 4, retry_backoff: float = 0.5,
                 fetch_policy: FetchPolicy = DEFAULT_POLICY) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be grpc or http, got {protocol!r}")
        if timeout <= 0 or retries < 0 or retry_backoff < 0:
            raise ValueError("timeout must be > 0, retries and retry_backoff >= 0")
        self.url, self.protocol, self.model, self.timeout = url, protocol, model, timeout
        self.retries, self.retry_backoff, self.fetch_policy = retries, retry_backoff, fetch_policy

    @property
    def ensemble(self) -> str:
        return ensemble_name(self.model)

    def _infer_kwargs(self) -> dict[str, Any]:
        # gRPC takes the deadline per call; the HTTP clients take it when they are built.
        return {"client_timeout": self.timeout} if self.protocol == "grpc" else {}

    def _retry_options(self) -> dict[str, Any]:
        return {"attempts": self.retries + 1, "base_s": self.retry_backoff, "max_s": 30.0, "on_error": _transient}

    @staticmethod
    def _result(response) -> RemovalResult:
        data = response.as_numpy(IMAGE_OUT).reshape(-1)[0]
        info = json.loads(response.as_numpy(INFO).reshape(-1)[0])
        return RemovalResult(bytes(data), info)



class RmbgClient(_Base):
    """Synchronous client. Thread-safe: each thread gets its own underlying connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    def _module(self):
        if self.protocol == "grpc":
            import tritonclient.grpc as mod
        else:
            import tritonclient.http as mod
        return mod

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            mod = self._module()
            kwargs = {"network_timeout": self.timeout, "connection_timeout": 10.0} if self.protocol == "http" else {}
            client = mod.InferenceServerClient(self.url, **kwargs)
            self._local.client = client
        return client

    def ready(self) -> bool:
        try:
            return bool(self._client().is_model_ready(self.ensemble))
        except Exception:  # noqa: BLE001 - any transport error means "not ready"
            return False

    def live(self) -> bool:
        """Whether a server answers at ``url`` at all: with ``ready`` false, its model is what is missing."""
        try:
            return bool(self._client().is_server_live())
        except Exception:  # noqa: BLE001 - any transport error means "nothing answers"
            return False

    def remove(self, image: Any, options: Options | dict[str, Any] | str | None = None,
               background: Any = None, *, model: str | None = None) -> RemovalResult:
        """Remove the background of one image: bytes, path, PIL image, numpy array, base64,
        data URI or http(s) URL (fetched here, under ``fetch_policy``)."""
        image = to_image_bytes(image, policy=self.fetch_policy)
        if background is not None:
            background = to_image_bytes(background, policy=self.fetch_policy, name="background")
        inputs, outputs = build_request(self._module(), image, options, background)
        ensemble = ensemble_name(model or self.model)

        def once() -> RemovalResult:
            try:
                return self._result(self._client().infer(ensemble, inputs, outputs=outputs, **self._infer_kwargs()))
            except Exception as exc:  # noqa: BLE001 - tritonclient raises its own types per protocol
                raise classify_error(exc) from exc

        return retrying(**self._retry_options())(once)

    def remove_many(self, items: Iterable[tuple[Any, Any]], options: dict[str, Any] | None = None,
                    concurrency: int = 4, background: Any = None
                    ) -> Iterator[tuple[Any, RemovalResult | RmbgError]]:
        """Yield (key, result or error) as each finishes; at most ``concurrency`` in flight."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            pending = set()
            it = iter(items)
            futures: dict[Any, Any] = {}

            def submit_next() -> bool:
                try:
                    key, data = next(it)
                except StopIteration:
                    return False
                fut = pool.submit(self.remove, data, options, background)
                futures[fut] = key
                pending.add(fut)
                return True

            for _ in range(concurrency):
                if not submit_next():
                    break
            while pending:
                done = next(as_completed(pending))
                pending.discard(done)
                key = futures.pop(done)
                try:
                    yield key, done.result()
                except RmbgError as exc:
                    yield key, exc
                submit_next()

    def remove_background(self, task: dict[str, Any]) -> dict[str, Any]:
        """A hosted-API ``removeBackground`` task in, the hosted-API result object out
        (``rmbg_hosted.tasks``: inputs are URLs, data URIs or base64, never local files)."""

        async def remove(image: bytes, options: Options, background: bytes | None, model: str) -> RemovalResult:
            return self.remove(image, options, background, model=model)

        return run_sync(execute_task(task, ClientTasks(remove, self.model, self.fetch_policy)))

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None

    def __enter__(self) -> RmbgClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRmbgClient(_Base):
    """asyncio client over tritonclient's aio modules: the same inputs, retries and deadlines as RmbgClient."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.protocol == "grpc":
            import tritonclient.grpc.aio as mod

            self._client = mod.InferenceServerClient(self.url)
        else:
            import tritonclient.http.aio as mod

            self._client = mod.InferenceServerClient(self.url, conn_timeout=self.timeout)
        self._mod = mod

    async def ready(self) -> bool:
        try:
            return bool(await self._client.is_model_ready(self.ensemble))
        except Exception:  # noqa: BLE001 - any transport error means "not ready"
            return False

    async def live(self) -> bool:
        """``RmbgClient.live`` for asyncio."""
        try:
            return bool(await self._client.is_server_live())
        except Exception:  # noqa: BLE001 - any transport error means "nothing answers"
            return False

    async def remove(self, image: Any, options: Options | dict[str, Any] | str | None = None,
                     background: Any = None, *, model: str | None = None) -> RemovalResult:
        """``RmbgClient.remove`` for asyncio: the same input forms, retries and deadline."""
        image = await to_image_bytes_async(image, policy=self.fetch_policy)
        if background is not None:
            background = await to_image_bytes_async(background, policy=self.fetch_policy, name="background")
        inputs, outputs = build_request(self._mod, image, options, background)
        ensemble = ensemble_name(model or self.model)

        async def once() -> RemovalResult:
            try:
                call = self._client.infer(ensemble, inputs, outputs=outputs, **self._infer_kwargs())
                # the HTTP aio client's conn_timeout covers connecting and reading; bound the whole call too
                return self._result(await asyncio.wait_for(call, self.timeout))
            except TimeoutError:
                raise ServerUnavailableError(f"{ensemble}: no result within the {self.timeout:g} s timeout") from None
            except Exception as exc:  # noqa: BLE001 - tritonclient raises its own types per protocol
                raise classify_error(exc) from exc

        return await async_retrying(**self._retry_options())(once)

    async def remove_many(self, items: Iterable[tuple[Any, Any]], options: dict[str, Any] | None = None,
                          concurrency: int = 4, background: Any = None
                          ) -> AsyncIterator[tuple[Any, RemovalResult | RmbgError]]:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        sem = asyncio.Semaphore(concurrency)

        async def one(key: Any, data: Any):
            async with sem:
                try:
                    return key, await self.remove(data, options, background)
                except RmbgError as exc:
                    return key, exc

        tasks = [asyncio.ensure_future(one(k, d)) for k, d in items]
        for fut in asyncio.as_completed(tasks):
            yield await fut

    async def remove_background(self, task: dict[str, Any]) -> dict[str, Any]:
        """``RmbgClient.remove_background`` for asyncio."""

        async def remove(image: bytes, options: Options, background: bytes | None, model: str) -> RemovalResult:
            return await self.remove(image, options, background, model=model)

        return await execute_task(task, ClientTasks(remove, self.model, self.fetch_policy))

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AsyncRmbgClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
