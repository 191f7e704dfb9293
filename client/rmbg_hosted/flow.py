"""THE removal flow every protocol runs: resolve the model, load the input, infer, deliver, notify.

A protocol adapter (a Runware task, a fal or GMI request, remove.bg's form...) parses its request
once into a ``Removal``: typed ``Options`` (the OPTIONS schema of ``rmbg_backend.options``), its
image sources, how the result is delivered, and ``Fields``, the request's own names for each part,
so every error names the parameter the caller sent. ``run_task`` does the rest and hands the
``Output`` to the adapter's ``render``, which makes the protocol's result body.

What differs between callers is behind ``Ports``: how to infer (the gateway's Triton pool, or the
client library's own connection), how to host a file, how to find an earlier output, how to
notify. Errors are ``rmbg_hosted.errors`` throughout; each protocol renders them in its own shape.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rmbg_backend.contract import BACKGROUND, EXTENSIONS, IMAGE, OPTIONS
from rmbg_backend.errors import RequestError
from rmbg_backend.options import Options, parse_options
from rmbg_hosted.errors import ImageInputError, InvalidInputError, RmbgError, ServerUnavailableError
from rmbg_hosted.fetch import FetchPolicy, resolve, upload_async
from rmbg_hosted.inputs import (
    canonical_uuid,
    check_header,
    check_inline,
    content_uuid,
    decode_inline,
    is_url,
    request_image,
)


@dataclass(frozen=True)
class Fields:
    """The request's own name for each part of a removal, so an error names what the caller sent.

    ``settings`` prefixes option keys (a task's ``settings.rgba``); ``options`` maps keys a protocol
    spells its own way (remove.bg's ``format`` for outputFormat). Without either, a key is itself.
    """

    image: str
    background: str | None = None
    model: str | None = "model"
    settings: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def option(self, key: str) -> str:
        if key in self.options:
            return self.options[key]
        return f"{self.settings}.{key}" if self.settings else key

    def of(self, wire_field: str | None) -> str | None:
        """A server-side field (a tensor, or an OPTIONS key) -> the request's parameter."""
        if wire_field is None:
            return None
        named = {IMAGE: self.image, BACKGROUND: self.background, OPTIONS: self.settings}
        return named[wire_field] if wire_field in named else self.option(wire_field)


def options_named(raw: Mapping[str, Any], fields: Fields) -> Options:
    """A protocol's options, checked once by the OPTIONS schema; a refusal names the protocol's parameter."""
    try:
        return parse_options(json.dumps(raw))
    except RequestError as exc:
        raise InvalidInputError(exc.message, code=exc.code, parameter=fields.of(exc.field)) from None


@dataclass(frozen=True)
class Removal:
    """One removal, parsed once at the protocol's edge; nothing in it is checked again but by Triton."""

    model: str                      # the name the caller gave (an alias), resolved by Ports.family
    image: str | bytes              # a URL, data URI, base64, an earlier output's imageUUID, or loaded bytes
    options: Options
    fields: Fields
    background: str | bytes | None = None
    host: bool = False              # keep the result at a hosted URL (Ports.host)
    upload_url: str | None = None   # PUT the result here (a presigned URL); the result's URL is it, query cut
    ttl_s: int | None = None        # how long a hosted result lives
    webhook_url: str | None = None  # POST {"data": [rendered result]} when done


@dataclass(frozen=True)
class Output:
    """A finished removal, for ``render``."""

    data: bytes
    content_type: str
    info: dict[str, Any]
    image_uuid: str
    input_image_uuid: str
    url: str | None

    @property
    def width(self) -> int:
        return int(self.info.get("width", 0))

    @property
    def height(self) -> int:
        return int(self.info.get("height", 0))

    @property
    def file_name(self) -> str:
        return f"{self.image_uuid}.{EXTENSIONS.get(self.content_type, 'bin')}"


class Inference(Protocol):
    data: bytes
    info: dict[str, Any]


class Ports(Protocol):
    """What a caller of the flow supplies."""

    policy: FetchPolicy           # image fetches
    callback_policy: FetchPolicy  # the caller's own systems: uploadEndpoint (and webhooks)

    def family(self, name: str, parameter: str | None) -> str:
        """A model name -> the family to run, or the caller's error (unknown) or an outage (not served now)."""

    async def infer(self, family: str, image: bytes, options: Options, background: bytes | None) -> Inference:
        """One removal; errors are RmbgErrors whose ``parameter`` is the server-side field at fault."""

    async def host(self, image_uuid: str, data: bytes, content_type: str, ttl_s: int | None) -> str:
        """Keep a result and return its URL."""

    async def lookup(self, image_uuid: str) -> bytes | None:
        """An earlier output by its imageUUID (None: not here, or not the caller's)."""

    async def notify(self, url: str, body: dict[str, Any]) -> None:
        """Deliver a webhook (the gateway in the background, the client library before returning)."""

    def failed(self, error: RmbgError) -> None:
        """A removal failed with ``error`` (metrics); the flow raises it on."""


async def load(value: str | bytes, name: str, ports: Ports) -> tuple[bytes, str]:
    """An input's bytes and its inputImageUUID: loaded bytes, an earlier output's imageUUID, a URL,
    a data URI or base64."""
    if isinstance(value, bytes):
        return value, content_uuid(value)
    image_uuid = canonical_uuid(value)
    if image_uuid is not None:
        found = await ports.lookup(image_uuid)
        if found is None:
            raise ImageInputError(f"no output with imageUUID {image_uuid} is stored here (outputs live for their "
                                  "ttl, default 86400 s)", code="imageNotFound", parameter=name)
        return found, image_uuid
    data = await request_image(value, ports.policy, name=name)
    return data, content_uuid(data)


async def check(removal: Removal, ports: Ports, *, outage_ok: bool = False) -> None:
    """Everything that can refuse a removal without downloading or running anything, for work that is
    queued (an async task, a queue request): the model, the form of each source and, for a URL, the
    address it resolves to; inline images are decoded (size, base64, a recognised header).

    ``outage_ok``: a model that is only unavailable right now does not refuse the work (it waits).
    """
    try:
        ports.family(removal.model, removal.fields.model)
    except ServerUnavailableError:
        if not outage_ok:
            raise
    sources = ((removal.image, removal.fields.image), (removal.background, removal.fields.background))
    for value, name in sources:
        if value is None or isinstance(value, bytes) or canonical_uuid(value) is not None:
            continue
        check_inline(value, name or "image")
        if is_url(value):
            await resolve(value.strip(), ports.policy, what=name or "image")
        else:
            check_header(decode_inline(value, name or "image", ports.policy.max_bytes), name or "image")
    if removal.upload_url:
        await resolve(removal.upload_url, ports.callback_policy, what="uploadEndpoint")


async def _infer(removal: Removal, ports: Ports, family: str, image: bytes, background: bytes | None) -> Inference:
    try:
        return await ports.infer(family, image, removal.options, background)
    except RmbgError as exc:  # the server names its own field (IMAGE, an option); say the request's
        raise exc.at(removal.fields.of(exc.parameter)) from None


async def _deliver(removal: Removal, result: Inference, ports: Ports, image_uuid: str) -> str | None:
    content_type = result.info.get("contentType", "application/octet-stream")
    if removal.upload_url:
        await upload_async(removal.upload_url, result.data, content_type, ports.callback_policy)
        return removal.upload_url.split("?", 1)[0]
    if removal.host:
        return await ports.host(image_uuid, result.data, content_type, removal.ttl_s)
    return None


async def run_task(removal: Removal, ports: Ports, render: Callable[[Output], dict[str, Any]]) -> dict[str, Any]:
    """Run one removal and return ``render(output)``, the protocol's result body (also POSTed to its webhook)."""
    image_uuid = str(uuid.uuid4())
    try:
        family = ports.family(removal.model, removal.fields.model)
        image, input_uuid = await load(removal.image, removal.fields.image, ports)
        background = None
        if removal.background is not None:
            background, _ = await load(removal.background, removal.fields.background or "background", ports)
        result = await _infer(removal, ports, family, image, background)
        url = await _deliver(removal, result, ports, image_uuid)
    except RmbgError as exc:
        ports.failed(exc)
        raise
    output = Output(result.data, result.info.get("contentType", "application/octet-stream"), result.info,
                    image_uuid, input_uuid, url)
    body = render(output)
    if removal.webhook_url:
        await ports.notify(removal.webhook_url, {"data": [body]})
    return body
