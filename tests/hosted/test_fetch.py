"""The one fetch implementation (issue 10 item 4): address rules, redirects, one total deadline, byte cap."""

import asyncio
import time

import pytest

from rmbg_hosted.errors import ImageInputError, UploadError
from rmbg_hosted.fetch import FetchError, FetchPolicy, fetch, fetch_async, forbidden_reason, upload


def _code(call) -> str:
    with pytest.raises(FetchError) as info:
        call()
    return info.value.reason


def test_fetch_with_limits(http_server, small_jpeg, loopback_policy):
    http_server.handler.files["/a.jpg"] = small_jpeg
    assert fetch(f"{http_server.base}/a.jpg", loopback_policy) == small_jpeg
    small = FetchPolicy(max_bytes=1000, allow=loopback_policy.allow)
    with pytest.raises(ImageInputError, match="over the 1,000-byte limit"):
        fetch(f"{http_server.base}/a.jpg", small)
    with pytest.raises(ImageInputError, match="more than the 100,000-byte limit"):
        fetch(f"{http_server.base}/huge-undeclared", FetchPolicy(max_bytes=100_000, allow=loopback_policy.allow))
    with pytest.raises(ImageInputError, match="HTTP 404"):
        fetch(f"{http_server.base}/missing.jpg", loopback_policy)


def test_drip_feeding_server_cannot_outlast_the_deadline(http_server, loopback_policy):
    """/slow sends 10 bytes every 0.1 s for 10 s: the old fetch checked its deadline only between
    64 KB reads and took the whole 10 s."""
    policy = FetchPolicy(timeout_s=1.0, allow=loopback_policy.allow)
    t0 = time.monotonic()
    with pytest.raises(FetchError, match="not fully received within 1 s") as info:
        fetch(f"{http_server.base}/slow", policy)
    elapsed = time.monotonic() - t0
    assert info.value.reason == "timeout"
    assert 0.9 <= elapsed < 1.5, f"a 1 s deadline returned after {elapsed:.2f} s"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x.jpg", "http://localhost:9/x.jpg", "http://10.0.0.1/x.jpg",
                                 "http://192.168.1.1/x.jpg", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]:9/x.jpg", "http://[::ffff:127.0.0.1]:9/x.jpg", "http://0.0.0.0:9/",
                                 "http://224.0.0.1/x.jpg", "http://240.0.0.1/x.jpg", "http://100.64.0.1/x.jpg"])
def test_non_public_addresses_are_refused_before_connecting(url):
    t0 = time.monotonic()
    assert _code(lambda: fetch(url)) == "forbidden_address"
    assert time.monotonic() - t0 < 1.0


def test_forbidden_reasons():
    import ipaddress

    assert forbidden_reason(ipaddress.ip_address("127.0.0.1")) == "loopback"
    assert forbidden_reason(ipaddress.ip_address("10.1.2.3")) == "private"
    assert forbidden_reason(ipaddress.ip_address("fe80::1")) == "link-local"
    assert forbidden_reason(ipaddress.ip_address("ff02::1")) == "multicast"
    assert forbidden_reason(ipaddress.ip_address("8.8.8.8")) is None


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x.jpg", "gopher://x/", "javascript:alert(1)"])
def test_only_http_and_https(url):
    assert _code(lambda: fetch(url)) == "scheme"


def test_every_redirect_is_rechecked(http_server, other_loopback_server, small_jpeg, loopback_policy):
    """127.0.0.1 is allowed; a redirect to 127.0.0.2 (loopback, not allowed) is refused unfollowed."""
    other_loopback_server.handler.files["/secret"] = b"internal"
    http_server.handler.redirects["/to-other"] = f"{other_loopback_server.base}/secret"
    http_server.handler.redirects["/to-file"] = "file:///etc/passwd"
    http_server.handler.files["/b.jpg"] = small_jpeg
    http_server.handler.redirects["/to-b"] = "/b.jpg"
    assert fetch(f"{http_server.base}/to-b", loopback_policy) == small_jpeg  # relative redirects work
    assert _code(lambda: fetch(f"{http_server.base}/to-other", loopback_policy)) == "forbidden_address"
    assert other_loopback_server.handler.seen == []
    assert _code(lambda: fetch(f"{http_server.base}/to-file", loopback_policy)) == "scheme"


def test_at_most_three_redirects(http_server, small_jpeg, loopback_policy):
    http_server.handler.files["/c.jpg"] = small_jpeg
    for i in range(4):
        http_server.handler.redirects[f"/hop{i}"] = f"/hop{i + 1}" if i < 3 else "/c.jpg"
    assert fetch(f"{http_server.base}/hop1", loopback_policy) == small_jpeg  # 3 redirects
    assert _code(lambda: fetch(f"{http_server.base}/hop0", loopback_policy)) == "redirects"  # 4


def test_sync_fetch_inside_a_running_event_loop(http_server, small_jpeg, loopback_policy):
    http_server.handler.files["/d.jpg"] = small_jpeg

    async def inside() -> tuple[bytes, bytes]:
        return fetch(f"{http_server.base}/d.jpg", loopback_policy), await fetch_async(
            f"{http_server.base}/d.jpg", loopback_policy)

    assert asyncio.run(inside()) == (small_jpeg, small_jpeg)


def test_put_upload(http_server, loopback_policy):
    upload(f"{http_server.base}/bucket/x.png?X-Amz-Signature=abc", b"PNGDATA", "image/png", loopback_policy)
    assert http_server.handler.uploads["/bucket/x.png?X-Amz-Signature=abc"] == ("image/png", b"PNGDATA")
    with pytest.raises(UploadError, match="HTTP 403") as info:
        upload(f"{http_server.base}/forbidden/x.png?X-Amz-Signature=abc", b"x", "image/png", loopback_policy)
    assert "abc" not in str(info.value)  # presigned signatures stay out of messages
    with pytest.raises(UploadError, match="only http and https"):
        upload("ftp://example.com/x.png", b"x", "image/png")
    with pytest.raises(UploadError, match="loopback"):
        upload(f"{http_server.base}/bucket/y.png", b"x", "image/png")  # no allow-list: loopback refused


def test_a_refused_address_suggests_the_fix_of_whoever_set_the_policy():
    """The library names its own remedy; the gateway's policy names its flag (issue: a library user was
    told to pass a server flag)."""
    import asyncio

    from rmbg_hosted.fetch import resolve

    with pytest.raises(FetchError) as library:
        asyncio.run(resolve("http://127.0.0.1/x.jpg", FetchPolicy(), what="image"))
    assert "FetchPolicy.allowing" in library.value.message and "--allow" not in library.value.message
    with pytest.raises(FetchError) as gateway:
        asyncio.run(resolve("http://127.0.0.1/x.jpg", FetchPolicy(hint="allow a range with --allow-fetch-from CIDR"),
                            what="image"))
    assert "--allow-fetch-from" in gateway.value.message
