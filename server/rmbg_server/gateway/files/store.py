"""Stored files: hosted outputs and uploads (served at ``/files/...`` through a signed URL until their
ttl runs out) and the inputs of queued requests (never given a URL), each owned by a tenant, within
its quota.

A name is ``{uuid}.{ext}`` and nothing else, so a request can never address a path of its choosing.
Outputs are ``png``/``jpg``/``webp``; a queued request's inline image is kept as ``bin`` until its job
finishes, so the job row stays small. A tenant's live bytes are bounded by a quota, checked when a
file is stored (429 beyond it).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from rmbg_backend.contract import EXTENSIONS
from rmbg_hosted.errors import BusyError
from rmbg_hosted.inputs import canonical_uuid

INPUT_TYPE = "application/octet-stream"  # a queued request's image, kept as sent
FILE_EXTENSIONS = {**EXTENSIONS, INPUT_TYPE: "bin"}
FILE_TYPES = {ext: content_type for content_type, ext in FILE_EXTENSIONS.items()}


class QuotaExceeded(BusyError):
    """A tenant's stored bytes would pass its quota."""

    def __init__(self, used: int, size: int, quota: int) -> None:
        super().__init__(f"this API key stores {used:,} bytes; {size:,} more would pass its quota of {quota:,} "
                         "bytes. Stored results free their space when their ttl ends (or use a shorter ttl)",
                         code="quotaExceeded", retry_after=60)


@dataclass(frozen=True)
class StoredFile:
    name: str            # f"{uuid}.{ext}"
    content_type: str
    size: int
    expires_at: float


def check_uuid(image_uuid: str) -> str:
    """The uuid in canonical lower case; a ValueError names what is accepted."""
    found = canonical_uuid(image_uuid)
    if found is None:
        raise ValueError(f"image uuid {image_uuid!r} is not a UUID (36-character form or 32 hex digits)")
    return found


def file_name(image_uuid: str, content_type: str) -> str:
    ext = FILE_EXTENSIONS.get(content_type)
    if ext is None:
        raise ValueError(f"content type {content_type!r} is not stored; accepted: {', '.join(FILE_EXTENSIONS)}")
    return f"{check_uuid(image_uuid)}.{ext}"


def parse_name(name: str, extensions: tuple[str, ...] = tuple(FILE_TYPES)) -> tuple[str, str] | None:
    """(uuid, ext) of a valid file name with one of ``extensions``; None for anything else."""
    if not isinstance(name, str) or "." not in name:
        return None
    stem, ext = name.rsplit(".", 1)
    found = canonical_uuid(stem)
    return (found, ext) if found == stem and ext in extensions else None


class FileStore(abc.ABC):
    @abc.abstractmethod
    async def put(self, image_uuid: str, data: bytes, content_type: str, ttl_s: int, *, tenant: str | None = None,
                  quota_bytes: int | None = None) -> StoredFile:
        """Store a file for ``ttl_s`` seconds; QuotaExceeded when the tenant's live bytes would pass the quota."""

    @abc.abstractmethod
    async def get(self, name: str) -> tuple[bytes, str] | None:
        """(data, content type) of a live file by its name; None when the name is bad, missing or expired.
        Any tenant's: the route hands it out only for a URL this gateway signed."""

    @abc.abstractmethod
    async def find(self, image_uuid: str, tenant: str | None = None) -> tuple[bytes, str] | None:
        """A live file of ``tenant`` by its uuid (an earlier output, or a queued input); None otherwise."""

    @abc.abstractmethod
    async def delete(self, image_uuid: str) -> None:
        """Forget a file before its ttl (a finished job's input)."""

    @abc.abstractmethod
    async def usage(self, tenant: str | None) -> int:
        """The tenant's live stored bytes."""

    @abc.abstractmethod
    async def secret(self) -> bytes:
        """The key that signs output URLs, the same for every replica sharing this store."""

    @abc.abstractmethod
    async def sweep(self) -> int:
        """Delete expired files; returns how many."""

    @abc.abstractmethod
    async def close(self) -> None: ...
