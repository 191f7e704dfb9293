"""Output URLs as capabilities: ``/files/{expires}/{signature}/{name}``, no API key needed.

Every hosted API hands out result URLs that work without a key (an ``<img>``, ``requests.get``), so
ours do too: the name is an unguessable UUID v4, the expiry is the file's ttl, and the signature is
an HMAC-SHA256 over both with a secret every replica shares (``RMBG_FILES_SECRET``, or the store's own
key: a file in ``--data-dir``, or one value in Redis). Whoever holds such a URL can read the file
until it expires: the URL is the access. The name comes last, so the URL ends in the file's
extension, as the hosted APIs' own result URLs do.
"""

from __future__ import annotations

import hashlib
import hmac
import time


def signature(secret: bytes, name: str, expires: int) -> str:
    return hmac.new(secret, f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_path(secret: bytes, name: str, expires_at: float) -> str:
    expires = int(expires_at)
    return f"/files/{expires}/{signature(secret, name, expires)}/{name}"


def valid(secret: bytes, name: str, expires: str | None, given: str | None, now: float | None = None) -> bool:
    """The signature matches (constant time) and the URL has not expired."""
    if not expires or not given or not expires.isdigit() or len(expires) > 12:
        return False
    if int(expires) <= (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature(secret, name, int(expires)), given)
