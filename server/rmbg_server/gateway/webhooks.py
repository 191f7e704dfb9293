"""Webhook delivery: POST a finished task's body to the caller's ``webhookURL``.

Receivers are often briefly down or overloaded, so connection errors, 5xx and 429 are retried
with exponential backoff and jitter (bounded by ``max_delay_s``; a ``Retry-After`` within that
bound is honoured). Other 4xx answers and 3xx redirects are final: retrying cannot fix them, and
following a redirect would skip the SSRF check. With a secret, each attempt is signed over its
own timestamp so a receiver can reject stale or replayed deliveries (see ``verify_signature``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Rmbg-Timestamp"
SIGNATURE_HEADER = "X-Rmbg-Signature"
# Names one delivery: the same on every retry, and when another replica re-sends it after a crash
# (it is derived from the URL and the body), so a receiver deduplicates on it.
DELIVERY_HEADER = "X-Rmbg-Delivery"


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


def backoff_delay(attempt: int, base_delay_s: float, max_delay_s: float, retry_after: str | None = None) -> float:
    """Seconds before retry ``attempt`` (0-based): ``base * 2**attempt`` capped, with half of it jittered."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after), max_delay_s)
    ceiling = min(max_delay_s, base_delay_s * 2 ** attempt)
    return random.uniform(ceiling / 2, ceiling)


async def post_webhook(client: httpx.AsyncClient, url: str, body: dict[str, Any], *, secret: str | None = None,
                       check_url: Callable[[str], Awaitable[None]] | None = None,
                       attempts: int = 5, base_delay_s: float = 0.5, max_delay_s: float = 30.0) -> bool:
    """POST ``body`` as JSON to ``url``; True once the receiver answered 2xx.

    ``check_url`` (the gateway's fetch rules) runs before each attempt, because DNS can change
    between attempts; when it raises, delivery stops.
    """
    raw = json.dumps(body, separators=(",", ":")).encode()
    delivery = delivery_id(url, raw)
    for attempt in range(attempts):
        if check_url is not None:
            try:
                await check_url(url)
            except Exception as e:
                log.warning("webhook %s refused: %s", url, e)
                return False
        headers = {"Content-Type": "application/json", "User-Agent": "rmbg-gateway", DELIVERY_HEADER: delivery}
        if secret:
            timestamp = str(int(time.time()))
            headers |= {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, raw)}
        retry_after = None
        try:
            response = await client.post(url, content=raw, headers=headers, follow_redirects=False)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            log.warning("webhook URL %s is invalid: %s", url, e)
            return False
        except httpx.HTTPError as e:  # connection refused, reset, timeout: worth another try
            reason = f"{type(e).__name__}: {e}"
        else:
            if response.is_success:
                return True
            reason = f"HTTP {response.status_code}"
            if response.status_code != 429 and response.status_code < 500:
                log.warning("webhook %s answered %s; not retried", url, reason)
                return False
            retry_after = response.headers.get("Retry-After")
        if attempt + 1 < attempts:
            delay = backoff_delay(attempt, base_delay_s, max_delay_s, retry_after)
            log.info("webhook %s failed (%s); retry %d of %d in %.2f s", url, reason, attempt + 1, attempts - 1, delay)
            await asyncio.sleep(delay)
        else:
            log.warning("webhook %s failed (%s) after %d attempts", url, reason, attempts)
    return False
