"""Webhook delivery: POST a finished request's body to the caller's URL.

Receivers are often briefly down or overloaded, so connection errors, timeouts, 5xx and 429 are
retried with the project's backoff (``rmbg_hosted.retry``; a ``Retry-After`` within the cap is
honoured). Other 4xx answers and 3xx redirects are final: retrying cannot fix them, and following
a redirect would skip the address check. Each attempt connects to the address that was checked
under the fetch rules (``fetch.post_async``), so DNS cannot swap it between check and connect.
With a secret, each attempt is signed over its own timestamp so a receiver can reject stale or
replayed deliveries (``verify_signature``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

from rmbg_hosted.fetch import DEFAULT_POLICY, FetchError, FetchPolicy, Reply, post_async, redact
from rmbg_hosted.retry import async_retrying

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Rmbg-Timestamp"
SIGNATURE_HEADER = "X-Rmbg-Signature"
# Names one delivery: the same on every retry, and when another replica re-sends it after a crash
# (it is derived from the URL and the body), so a receiver deduplicates on it.
DELIVERY_HEADER = "X-Rmbg-Delivery"
_RETRIED_REASONS = ("connect", "timeout", "dns")


def delivery_id(url: str, raw_body: bytes) -> str:
    return hashlib.sha256(url.encode() + b"\n" + raw_body).hexdigest()[:32]


def sign(secret: str, timestamp: str, raw_body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``f"{timestamp}.{raw_body}"`` keyed by the secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str | None, signature: str | None, raw_body: bytes, *,
                     tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """What a receiver runs: the signature matches (constant time) and the timestamp is recent."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, raw_body), signature)


def _worth_retrying(reply: Reply) -> bool:
    return reply.status == 429 or reply.status >= 500


def _headers(raw: bytes, delivery: str, secret: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "rmbg-gateway", DELIVERY_HEADER: delivery}
    if secret:
        timestamp = str(int(time.time()))
        headers |= {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, raw)}
    return headers


async def post_webhook(url: str, body: dict[str, Any], *, secret: str | None = None,
                       policy: FetchPolicy = DEFAULT_POLICY, attempts: int = 5, base_delay_s: float = 0.5,
                       max_delay_s: float = 30.0) -> bool:
    """POST ``body`` as JSON to ``url``; True once the receiver answered 2xx, False when delivery gave up."""
    raw = json.dumps(body, separators=(",", ":")).encode()
    delivery = delivery_id(url, raw)

    def log_retry(state: Any) -> None:
        outcome = state.outcome
        reason = str(outcome.exception()) if outcome.failed else f"HTTP {outcome.result().status}"
        log.info("webhook %s failed (%s); retry %d of %d", redact(url), reason, state.attempt_number, attempts - 1)

    async def once() -> Reply:  # signed anew each time: the timestamp is the attempt's own
        return await post_async(url, raw, _headers(raw, delivery, secret), policy, what="webhookURL")

    retried = async_retrying(attempts, base_delay_s, max_delay_s, on_result=_worth_retrying, log=log_retry,
                             on_error=lambda e: isinstance(e, FetchError) and e.reason in _RETRIED_REASONS,
                             retry_after=lambda outcome: outcome.retry_after if isinstance(outcome, Reply) else None)
    try:
        reply = await retried(once)
    except FetchError as exc:
        log.warning("webhook %s not delivered: %s", redact(url), exc)
        return False
    if 200 <= reply.status < 300:
        return True
    log.warning("webhook %s answered HTTP %d; not delivered", redact(url), reply.status)
    return False
