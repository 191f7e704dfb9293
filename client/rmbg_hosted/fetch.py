"""The one outbound HTTP implementation: image URLs, presigned uploads and webhooks.

Shared by the client library and the gateway, because both fetch URLs that someone else chose.
The rules:
- http and https only;
- the host is resolved first, and every address it resolves to must be public: loopback, private,
  link-local, multicast, reserved and unspecified addresses are refused unless an allow-list
  CIDR contains them (``FetchPolicy.allowing``; the gateway's ``--allow-fetch-from``). The
  connection then goes to the checked address (the name is kept for the Host header and TLS),
  so a second DNS answer cannot swap it;
- redirects are followed by hand, at most ``max_redirects``, each target checked like the first;
- one total deadline for everything (resolution, connection, redirects, every byte), enforced by
  cancelling the whole operation, so a server that drip-feeds bytes cannot hold a request longer;
- a byte cap, checked on Content-Length and while streaming.

Everything is asyncio (httpx); the synchronous functions run the same coroutines, so there is
one implementation of each rule.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from rmbg_hosted.errors import ImageInputError, UploadError

MAX_FETCH_BYTES = 50 * 1024 * 1024
FETCH_TIMEOUT_S = 30.0
MAX_REDIRECTS = 3
_CHUNK = 64 * 1024
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")


# The rule a fetch broke (``FetchError.reason``, a metrics label) -> the error code callers see.
FETCH_CODES = {"scheme": "invalidImageURL", "bad_url": "invalidImageURL", "forbidden_address": "forbiddenAddress",
               "dns": "imageFetchFailed", "connect": "imageFetchFailed", "http_status": "imageFetchFailed",
               "too_large": "imageTooLarge", "timeout": "imageFetchTimeout", "redirects": "tooManyRedirects"}
LIBRARY_HINT = "allow a range with fetch_policy=FetchPolicy.allowing([\"10.0.0.0/8\"])"


class FetchError(ImageInputError):
    """A URL could not be fetched under the rules; ``reason`` says which rule (a key of FETCH_CODES)."""

    def __init__(self, reason: str, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message, code=FETCH_CODES[reason], parameter=parameter)
        self.reason = reason

    def at(self, parameter: str | None) -> FetchError:
        return FetchError(self.reason, self.message, parameter=parameter)


def _fail(reason: str, what: str, message: str) -> FetchError:
    return FetchError(reason, message, parameter=what)


@dataclass(frozen=True)
class FetchPolicy:
    """Limits and the address allow-list of outbound requests."""

    max_bytes: int = MAX_FETCH_BYTES
    timeout_s: float = FETCH_TIMEOUT_S
    max_redirects: int = MAX_REDIRECTS
    allow: tuple[IPNetwork, ...] = ()
    hint: str = LIBRARY_HINT  # how whoever set this policy opens a range (the gateway names its flag)

    @classmethod
    def allowing(cls, cidrs: Iterable[str], **kwargs: Any) -> FetchPolicy:
        """A policy whose allow-list is ``cidrs`` (``127.0.0.0/8``, ``10.1.2.3``, ``fd00::/8``)."""
        return cls(allow=parse_cidrs(cidrs), **kwargs)


def parse_cidrs(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"--allow-fetch-from {cidr!r} is not a CIDR such as 127.0.0.0/8 or fd00::/8") from None
    return tuple(networks)


DEFAULT_POLICY = FetchPolicy()


def redact(url: str) -> str:
    """The URL without its query and credentials: presigned signatures must not reach logs or errors."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:  # a malformed URL: say nothing of it but its scheme
        return url.split(":", 1)[0][:10] + ":..."
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))[:300]


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, 6to4, Teredo, NAT64), if any.

    A request to such an address reaches that IPv4 host (through the kernel, a relay or a
    translator), so it must pass the IPv4 rules: ``2002:7f00:1::`` is loopback in disguise.
    """
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        server, client = ip.teredo
        return client if forbidden_reason(client) else server
    packed = ip.packed
    if any(ip in net for net in _NAT64) or (ip in _IPV4_COMPATIBLE and packed[12:] != b"\0\0\0\0"
                                            and int(ip) > 1):
        return ipaddress.IPv4Address(packed[12:])
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why a server-side request must not reach ``ip`` (None: a public address)."""
    embedded = embedded_ipv4(ip)
    if embedded is not None:
        reason = forbidden_reason(embedded)
        return f"{reason} (as {embedded}, inside an IPv6 address)" if reason else None
    for attribute, reason in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                              ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                              ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(ip, attribute):
            return reason
    return None if ip.is_global else "non-public"


def _allowed(ip: IPAddress, policy: FetchPolicy) -> bool:
    return any(ip.version == net.version and ip in net for net in policy.allow)


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``pinned_url``) and what to say in Host and TLS."""

    url: str
    pinned_url: str
    host_header: str
    tls_name: str | None


def _split(url: str, what: str) -> tuple[Any, str, int]:
    if not isinstance(url, str) or len(url) > 8192:
        raise _fail("bad_url", what, "must be an http(s) URL of at most 8192 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise _fail("bad_url", what, f"{redact(url)} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise _fail("scheme", what, f"only http and https URLs are accepted, got scheme "
                                   f"{parts.scheme[:20]!r}")
    if not parts.hostname:
        raise _fail("bad_url", what, f"{redact(url)} has no host")
    return parts, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(url: str, policy: FetchPolicy = DEFAULT_POLICY, *, what: str = "URL") -> Target:
    """Check ``url`` under the rules and pin it to one checked address; raises FetchError."""
    parts, host, port = _split(url, what)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise _fail("dns", what, f"cannot resolve host {host[:255]!r} ({exc})") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
        if not addresses:
            raise _fail("dns", what, f"host {host[:255]!r} resolves to no address")
    for ip in addresses:  # every answer must pass, or a rebinding name could pick a bad one later
        reason = forbidden_reason(ip)
        if reason and not _allowed(ip, policy):
            raise _fail("forbidden_address", what, f"{redact(url)} resolves to {ip}, a {reason} address; "
                                                       f"requests go to public addresses only ({policy.hint})")
    ip = addresses[0]
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    pinned = urlunsplit((parts.scheme, f"{netloc}:{port}", parts.path or "/", parts.query, ""))
    default_port = port == (443 if parts.scheme == "https" else 80)
    host_header = (f"[{host}]" if ":" in host else host) + ("" if default_port else f":{port}")
    return Target(url, pinned, host_header, host if parts.scheme == "https" else None)


_SSL: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    """One verifying context for every client (loading the CA bundle costs milliseconds)."""
    global _SSL
    if _SSL is None:
        _SSL = httpx.create_ssl_context()
    return _SSL


def _client() -> httpx.AsyncClient:
    # A client per operation: connections are pinned to checked addresses, and a pooled TLS
    # connection must never be reused for another host name on the same address.
    # trust_env=False: a proxy from the environment would bypass the address checks.
    return httpx.AsyncClient(verify=_ssl_context(), trust_env=False, follow_redirects=False,
                             timeout=httpx.Timeout(None), headers={"User-Agent": "rmbg"})


async def _send(client: httpx.AsyncClient, method: str, target: Target, **kwargs: Any) -> httpx.Response:
    extensions = {"sni_hostname": target.tls_name} if target.tls_name else {}
    headers = {"Host": target.host_header, **kwargs.pop("headers", {})}
    request = client.build_request(method, target.pinned_url, headers=headers, extensions=extensions, **kwargs)
    return await client.send(request, stream=True)


async def _with_deadline(operation: Awaitable[T], timeout_s: float, on_timeout: Callable[[], Exception]) -> T:
    try:
        return await asyncio.wait_for(operation, timeout_s)
    except TimeoutError:
        raise on_timeout() from None


async def _fetch(url: str, policy: FetchPolicy, what: str) -> bytes:
    async with _client() as client:
        for _ in range(policy.max_redirects + 1):
            target = await resolve(url, policy, what=what)
            try:
                response = await _send(client, "GET", target)
            except httpx.HTTPError as exc:
                raise _fail("connect", what, f"{redact(url)}: {type(exc).__name__} {exc}") from None
            try:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                return await _read_body(response, url, policy, what)
            finally:
                await response.aclose()
        raise _fail("redirects", what, f"{redact(url)}: more than {policy.max_redirects} redirects")


async def _read_body(response: httpx.Response, url: str, policy: FetchPolicy, what: str) -> bytes:
    if response.status_code >= 400 or response.status_code < 200:
        raise _fail("http_status", what, f"{redact(url)}: HTTP {response.status_code} "
                                        f"{response.reason_phrase}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise _fail("too_large", what, f"{redact(url)}: {int(declared):,} bytes, over the "
                                      f"{policy.max_bytes:,}-byte limit")
    chunks, total = [], 0
    try:
        async for chunk in response.aiter_raw(_CHUNK):
            total += len(chunk)
            if total > policy.max_bytes:
                raise _fail("too_large", what, f"{redact(url)}: more than the {policy.max_bytes:,}-byte limit")
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise _fail("connect", what, f"{redact(url)}: {type(exc).__name__} {exc}") from None
    return b"".join(chunks)


async def fetch_async(url: str, policy: FetchPolicy = DEFAULT_POLICY, *, what: str = "image URL") -> bytes:
    """GET ``url`` under the rules; raises FetchError (an ImageInputError) naming ``what`` and the rule."""
    return await _with_deadline(
        _fetch(url, policy, what), policy.timeout_s,
        lambda: _fail("timeout", what, f"{redact(url)}: not fully received within {policy.timeout_s:g} s"))


UPLOAD = "uploadEndpoint"


async def _upload(url: str, data: bytes, content_type: str, policy: FetchPolicy) -> None:
    async with _client() as client:
        target = await resolve(url, policy, what=UPLOAD)
        headers = {"Content-Type": content_type}
        try:
            response = await _send(client, "PUT", target, content=data, headers=headers)
        except httpx.HTTPError as exc:
            raise UploadError(f"upload to {redact(url)}: {type(exc).__name__} {exc}", parameter=UPLOAD) from None
        await response.aclose()
        if response.status_code >= 300:
            raise UploadError(f"upload to {redact(url)}: HTTP {response.status_code} {response.reason_phrase}",
                              parameter=UPLOAD)


async def upload_async(url: str, data: bytes, content_type: str, policy: FetchPolicy = DEFAULT_POLICY) -> None:
    """HTTP PUT of a result to a presigned URL (S3, GCS, Azure SAS...), under the same rules (no redirects)."""
    try:
        await _with_deadline(_upload(url, data, content_type, policy), policy.timeout_s,
                             lambda: UploadError(f"upload to {redact(url)}: no answer within {policy.timeout_s:g} s",
                                                 parameter=UPLOAD))
    except FetchError as exc:
        raise UploadError(exc.message, parameter=UPLOAD) from None


@dataclass(frozen=True)
class Reply:
    """What a receiver answered to a POST: its status and the Retry-After it asked for, if any."""

    status: int
    retry_after: str | None


async def _post(url: str, content: bytes, headers: dict[str, str], policy: FetchPolicy, what: str) -> Reply:
    async with _client() as client:
        target = await resolve(url, policy, what=what)
        try:
            response = await _send(client, "POST", target, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise _fail("connect", what, f"{redact(url)}: {type(exc).__name__} {exc}") from None
        await response.aclose()
        return Reply(response.status_code, response.headers.get("retry-after"))


async def post_async(url: str, content: bytes, headers: dict[str, str], policy: FetchPolicy = DEFAULT_POLICY, *,
                     what: str = "webhookURL") -> Reply:
    """POST to ``url`` under the rules (checked address pinned, no redirects followed, one deadline).

    Raises FetchError when the address is refused, the host does not resolve or the connection
    fails; any HTTP answer, even an error status, is a Reply (the caller decides about retrying).
    """
    return await _with_deadline(
        _post(url, content, headers, policy, what), policy.timeout_s,
        lambda: _fail("timeout", what, f"{redact(url)}: no answer within {policy.timeout_s:g} s"))


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine from synchronous code, also when this thread already runs an event loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


def fetch(url: str, policy: FetchPolicy = DEFAULT_POLICY, *, what: str = "image URL") -> bytes:
    """Synchronous ``fetch_async``."""
    return run_sync(fetch_async(url, policy, what=what))


def upload(url: str, data: bytes, content_type: str, policy: FetchPolicy = DEFAULT_POLICY) -> None:
    """Synchronous ``upload_async``."""
    run_sync(upload_async(url, data, content_type, policy))
