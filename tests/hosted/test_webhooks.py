"""Webhook delivery against a real local HTTP receiver: retries, backoff bounds, signatures."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from rmbg_hosted.fetch import FetchPolicy
from rmbg_hosted.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    post_webhook,
    sign,
    verify_signature,
)
from rmbg_server.launcher import free_port
from tests.harness.cluster import WebhookReceiver

SECRET = "whsec-test-6b1f"
SLACK_S = 5.0  # upper bounds on timings: the machine running the tests may be heavily loaded
LOOPBACK = FetchPolicy.allowing(["127.0.0.0/8"])  # the receivers listen on loopback, which is refused by default
BODY = {"data": [{"taskType": "removeBackground", "taskUUID": "5b4f6a0e-3f63-4a4b-9a4b-6f1d1b7a9c01",
                  "imageURL": "http://127.0.0.1:8080/files/0e7c.png", "cost": 0}]}


@pytest.fixture
def receiver(request):
    with WebhookReceiver(request.param) as r:
        yield r


def post(url: str, body: dict = BODY, **kw) -> tuple[bool, float]:
    kw.setdefault("policy", LOOPBACK)

    async def main():
        t0 = time.monotonic()
        ok = await post_webhook(url, body, **kw)
        return ok, time.monotonic() - t0

    return asyncio.run(main())


@pytest.mark.parametrize("receiver", [[500, 503, 200]], indirect=True)
def test_retries_on_5xx_then_delivers_signed_identical_bodies(receiver):
    ok, _ = post(receiver.url, secret=SECRET, base_delay_s=0.05, max_delay_s=0.2)
    assert ok
    assert len(receiver.deliveries) == 3
    assert {d.raw for d in receiver.deliveries} == {json.dumps(BODY, separators=(",", ":")).encode()}
    assert len({d.headers[DELIVERY_HEADER] for d in receiver.deliveries}) == 1
    for d in receiver.deliveries:
        assert d.headers["Content-Type"] == "application/json"
        assert verify_signature(SECRET, d.headers[TIMESTAMP_HEADER], d.headers[SIGNATURE_HEADER], d.raw)
        assert not verify_signature("another-secret", d.headers[TIMESTAMP_HEADER], d.headers[SIGNATURE_HEADER], d.raw)
        assert not verify_signature(SECRET, d.headers[TIMESTAMP_HEADER], d.headers[SIGNATURE_HEADER], d.raw + b" ")
    gaps = [b.at - a.at for a, b in zip(receiver.deliveries, receiver.deliveries[1:], strict=False)]
    assert 0.025 <= gaps[0] <= 0.05 + SLACK_S and 0.05 <= gaps[1] <= 0.1 + SLACK_S  # half-jittered, doubling


@pytest.mark.parametrize("receiver", [[200]], indirect=True)
def test_without_a_secret_nothing_is_signed(receiver):
    assert post(receiver.url)[0]
    (d,) = receiver.deliveries
    assert TIMESTAMP_HEADER not in d.headers and SIGNATURE_HEADER not in d.headers
    assert json.loads(d.raw) == BODY


@pytest.mark.parametrize("receiver", [[200]], indirect=True)
def test_a_resent_delivery_keeps_its_id_so_receivers_can_deduplicate(receiver):
    """A replica re-sending after a crash sends the same body: it carries the same delivery id."""
    assert post(receiver.url)[0] and post(receiver.url)[0]
    other = {"data": [{**BODY["data"][0], "taskUUID": "0c0ffee0-3f63-4a4b-9a4b-6f1d1b7a9c01"}]}
    assert post(receiver.url, other)[0]
    first, again, different = (d.headers[DELIVERY_HEADER] for d in receiver.deliveries)
    assert first == again != different


@pytest.mark.parametrize("receiver", [[400], [404], [(302, {"Location": "http://127.0.0.1:1/elsewhere"})]],
                         indirect=True)
def test_a_final_answer_is_not_retried_nor_a_redirect_followed(receiver):
    ok, _ = post(receiver.url, base_delay_s=0.01)
    assert not ok
    assert len(receiver.deliveries) == 1


@pytest.mark.parametrize("receiver", [[(429, {"Retry-After": "1"}), 200]], indirect=True)
def test_429_honours_retry_after_within_the_bound(receiver):
    ok, _ = post(receiver.url, base_delay_s=0.01, max_delay_s=5)
    assert ok
    first, second = receiver.deliveries
    assert 0.95 <= second.at - first.at <= 1.0 + SLACK_S


@pytest.mark.parametrize("receiver", [[(503, {"Retry-After": "3600"})]], indirect=True)
def test_every_attempt_fails_within_the_backoff_bound(receiver):
    ok, elapsed = post(receiver.url, attempts=4, base_delay_s=0.05, max_delay_s=0.1)
    assert not ok
    assert len(receiver.deliveries) == 4
    assert 3 * 0.1 <= elapsed <= 3 * 0.1 + SLACK_S  # a Retry-After beyond max_delay_s (1 h) is capped to it


def test_connection_refused_is_retried_then_given_up():
    ok, elapsed = post(f"http://127.0.0.1:{free_port()}/hook", attempts=4, base_delay_s=0.05, max_delay_s=0.1)
    assert not ok
    assert 0.025 + 0.05 + 0.05 <= elapsed <= 0.05 + 0.1 + 0.1 + SLACK_S


@pytest.mark.parametrize("receiver", [[200]], indirect=True)
def test_a_refused_address_is_never_contacted(receiver):
    """The default policy refuses loopback: the receiver sees nothing, and nothing is retried."""
    ok, elapsed = post(receiver.url, policy=FetchPolicy(), attempts=3, base_delay_s=5.0)
    assert ok is False and receiver.deliveries == [] and elapsed < 2.5


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http://[::1", "file:///etc/passwd"])
def test_invalid_urls_fail_at_once(url):
    ok, elapsed = post(url, attempts=3, base_delay_s=5.0)
    assert not ok and elapsed < 2.5  # no backoff (at least 2.5 s + 5 s): retrying cannot fix the URL


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    # RFC 4231-style check against an independent computation
    import hashlib
    import hmac

    raw = b'{"data":[]}'
    expected = hmac.new(b"key", b"1700000000." + raw, hashlib.sha256).hexdigest()
    assert sign("key", "1700000000", raw) == f"sha256={expected}"
    assert verify_signature("key", "1700000000", f"sha256={expected}", raw, now=1700000100)
    assert not verify_signature("key", "1700000000", f"sha256={expected}", raw, now=1700000000 + 301)  # stale
    assert not verify_signature("key", None, f"sha256={expected}", raw)
    assert not verify_signature("key", "17e8", f"sha256={expected}", raw)
