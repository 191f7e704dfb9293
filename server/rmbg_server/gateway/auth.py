"""API keys and per-key rate limits.

Keys come from ``--api-key`` (repeatable), ``--api-key-file`` (one per line, ``#`` comments) and
``RMBG_API_KEYS`` (comma-separated). A request sends ``Authorization: Bearer KEY`` (Runware, GMI)
or ``Authorization: Key KEY`` (fal). Keys are compared in constant time, each against every
configured key, so neither the match nor its position leaks through timing. Each key has its
own token bucket; without keys there is nothing to limit per key (and the gateway binds only
loopback addresses, see ``check_bind``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SCHEMES = ("bearer", "key")


def load_keys(keys: Iterable[str] = (), files: Iterable[Path] = (), env: str | None = None) -> tuple[str, ...]:
    """Every configured key, from flags, files and the environment (``RMBG_API_KEYS``), deduplicated."""
    found = [k.strip() for k in keys]
    for path in files:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"--api-key-file {path}: {exc.strerror}") from None
        found += [line.strip() for line in lines if not line.lstrip().startswith("#")]
    text = os.environ.get("RMBG_API_KEYS", "") if env is None else env
    found += [k.strip() for k in text.split(",")]
    keys_ = tuple(dict.fromkeys(k for k in found if k))
    short = [k for k in keys_ if len(k) < 16]
    if short:
        raise ValueError(f"{len(short)} API key(s) shorter than 16 characters; use long random keys "
                         "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return keys_


def check_bind(host: str, keys: tuple[str, ...]) -> None:
    """Without keys, only a loopback bind: an open gateway fetches URLs and spends compute for anyone."""
    if keys:
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"refusing to bind {host} without API keys: anyone who can reach it could use it. "
                         "Set --api-key / --api-key-file / RMBG_API_KEYS, or bind 127.0.0.1")


def presented_key(authorization: str | None) -> str | None:
    """The key in ``Bearer KEY`` or ``Key KEY``; None when the header is missing or malformed."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() in SCHEMES and key else None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class KeyRing:
    """Matches keys in constant time and meters each one with a token bucket."""

    keys: tuple[str, ...]
    rate_per_s: float = 20.0
    burst: int = 40
    _digests: tuple[tuple[str, bytes], ...] = field(init=False, repr=False)
    _buckets: dict[str, _Bucket] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        # The id used for buckets and logs is a short hash: the key itself never reaches a log.
        self._digests = tuple((hashlib.sha256(k.encode()).hexdigest()[:16], _digest(k)) for k in self.keys)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def identify(self, authorization: str | None) -> str | None:
        """The matching key's id, or None. Compares against every key, always (constant time)."""
        key = presented_key(authorization)
        given = _digest(key or "")
        match = None
        for key_id, digest in self._digests:
            if hmac.compare_digest(given, digest) and key is not None:
                match = key_id
        return match

    def take(self, key_id: str, now: float | None = None) -> float:
        """Spend one token; returns 0 when allowed, else the seconds until the next token."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate_per_s)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s
