"""What a hosted-API request may carry as an image, and the encodings results go back in.

A request's image is an http(s) URL (fetched under ``rmbg_hosted.fetch``), a data URI or base64.
A request is data from someone else, so a local path is never read, and the answer to a path
does not depend on whether the file exists. Inline base64 is refused above the byte cap before
it is decoded, and no error message quotes input bytes.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import re
import uuid
from typing import Any

from rmbg_hosted.errors import ImageInputError
from rmbg_hosted.fetch import DEFAULT_POLICY, FetchPolicy, fetch_async

try:  # SIMD base64 (the server and gateway extras install it): a 1.2 MB cut-out in 0.1 ms, not 3.5
    from pybase64 import b64decode as _b64decode
    from pybase64 import b64encode as _b64encode
except ImportError:  # the client-only install: the standard library, same results
    from base64 import b64decode as _b64decode
    from base64 import b64encode as _b64encode

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+/-]*)(?:;[\w=.-]+)*?(?P<b64>;base64)?,(?P<data>.*)$", re.S)
# Leading bytes of the formats a base64 string is likely to carry (to tell base64 from other text).
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00")
_PATH_PREFIXES = ("/", "./", "../", "~", "file:")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")
ACCEPTED = "an http(s) URL, a data URI (data:image/png;base64,...) or base64"


def canonical_uuid(value: Any) -> str | None:
    """A UUID in its canonical lower-case form (36 characters or 32 hex digits); None for anything else."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    text = value.strip().lower()
    return text if _UUID.fullmatch(text) else None


def content_uuid(data: bytes) -> str:
    """A stable UUID for input bytes (``inputImageUUID``): the same image always gets the same one."""
    return str(uuid.UUID(bytes=hashlib.sha256(data).digest()[:16], version=4))


def is_url(text: str) -> bool:
    return text.lstrip()[:8].lower().startswith(("http://", "https://"))


def try_b64(text: str) -> bytes | None:
    """Strict base64 (also MIME-style with line breaks) -> bytes; None when it is not base64."""
    try:
        return _b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return _b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_inline(text: str, name: str, max_bytes: int) -> bytes:
    """A data URI or a base64 string -> bytes, refusing more than ``max_bytes`` before decoding."""
    text = text.strip()
    match = _DATA_URI.match(text[:512])  # the header is short; the payload is sliced below
    payload = text
    if match:
        if not match.group("b64"):
            raise ImageInputError("only base64 data URIs are accepted (data:<type>;base64,...)", parameter=name)
        payload = text[text.index(",") + 1:]
    if len(payload) > max_bytes * 14 // 10 + 16:  # base64 is 4/3 of the bytes, plus room for line breaks
        raise ImageInputError(f"about {len(payload) * 3 // 4:,} bytes of base64, over the {max_bytes:,}-byte limit",
                              parameter=name)
    decoded = try_b64(payload)
    if decoded is None:
        kind = "data URI payload" if match else "value"
        raise ImageInputError(f"the {kind} is not valid base64; send {ACCEPTED}", parameter=name)
    if len(decoded) > max_bytes:
        raise ImageInputError(f"{len(decoded):,} bytes, over the {max_bytes:,}-byte limit", parameter=name)
    return decoded


def looks_like_path(text: str) -> bool:
    """Text that names a file rather than holding an image: never read, whatever is on this disk.

    JPEG's base64 starts with ``/9j/``, so text that decodes to an image's leading bytes is base64.
    """
    text = text.strip()
    if not (text.startswith(_PATH_PREFIXES) or "\\" in text[:4096]):
        return False
    decoded = try_b64(text[:4096]) if len(text) >= 8 else None
    return not (decoded is not None and decoded.startswith(IMAGE_MAGIC))


def check_inline(value: Any, name: str) -> None:
    """Refuse what is never an image source before any I/O: not a string, another scheme, a path."""
    if not isinstance(value, str) or not value.strip():
        raise ImageInputError(f"must be a non-empty string: {ACCEPTED}", parameter=name)
    if is_url(value):
        return
    if "://" in value[:16]:
        raise ImageInputError(f"only http and https URLs are accepted, got scheme "
                              f"{value.split('://', 1)[0][:16]!r}", parameter=name)
    if looks_like_path(value):
        raise ImageInputError(f"local file paths are never read from a request; send {ACCEPTED}", parameter=name)


async def request_image(value: Any, policy: FetchPolicy = DEFAULT_POLICY, *, name: str = "inputs.image") -> bytes:
    """A request's image: an http(s) URL (fetched under ``policy``), a data URI or base64. Never a file."""
    check_inline(value, name)
    if is_url(value):
        return await fetch_async(value.strip(), policy, what=name)
    return decode_inline(value, name, policy.max_bytes)


def check_header(data: bytes, name: str) -> bytes:
    """Refuse bytes whose header no image decoder recognises, before they are stored for later.

    Pillow reads only the header here (``Image.open`` is lazy); the server decodes in full, under
    its own limits, when the job runs.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.size  # noqa: B018 - parsing the header is the check
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageInputError(f"is not a recognised image ({type(exc).__name__}); send JPEG, PNG, WebP, GIF, "
                              "TIFF, BMP, AVIF or HEIF", parameter=name) from None
    except Image.DecompressionBombError as exc:
        raise ImageInputError(str(exc), parameter=name) from None
    return data


def to_base64(data: bytes) -> str:
    return _b64encode(data).decode("ascii")


def to_data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{to_base64(data)}"
