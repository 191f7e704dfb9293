"""Client-side image inputs and outputs: the forms platforms pass around.

URLs are fetched by the client, never by the server (the server opens no connections),
with a size cap enforced while streaming and a wall-clock timeout.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rmbg_client.errors import ImageInputError, UploadError

MAX_FETCH_BYTES = 50 * 1024 * 1024
FETCH_TIMEOUT_S = 30.0
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+/-]*)(?:;[\w=.-]+)*?(?P<b64>;base64)?,(?P<data>.*)$", re.S)


def fetch_url(url: str, max_bytes: int = MAX_FETCH_BYTES, timeout: float = FETCH_TIMEOUT_S) -> bytes:
    """GET ``url`` with a byte cap (checked on Content-Length and while reading) and a deadline."""
    deadline = time.monotonic() + timeout
    req = urllib.request.Request(url, headers={"User-Agent": "rmbg-client"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ImageInputError(f"image URL {url}: {int(declared):,} bytes, over the {max_bytes:,}-byte limit")
            chunks, total = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise ImageInputError(f"image URL {url}: not fully received within {timeout:g} s")
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise ImageInputError(f"image URL {url}: more than the {max_bytes:,}-byte limit")
                chunks.append(chunk)
    except ImageInputError:
        raise
    except urllib.error.HTTPError as exc:
        raise ImageInputError(f"image URL {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImageInputError(f"image URL {url}: {reason} (timeout {timeout:g} s)") from None
    return b"".join(chunks)


def _encode_png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def to_image_bytes(value: Any, *, max_bytes: int = MAX_FETCH_BYTES, timeout: float = FETCH_TIMEOUT_S,
                   name: str = "image") -> bytes:
    """bytes, a path, a PIL image, a numpy array, base64, a data URI or an http(s) URL -> encoded bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, Path):
        try:
            return value.read_bytes()
        except OSError as exc:
            raise ImageInputError(f"{name}: cannot read {value}: {exc.strerror}") from None
    try:
        from PIL import Image

        if isinstance(value, Image.Image):
            return _encode_png(value)
    except ImportError:  # pragma: no cover - Pillow is a base dependency
        pass
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            from PIL import Image

            bad_shape = value.ndim not in (2, 3) or (value.ndim == 3 and value.shape[2] not in (3, 4))
            if value.dtype != np.uint8 or bad_shape:
                raise ImageInputError(f"{name}: numpy arrays must be uint8 HxW, HxWx3 (RGB) or HxWx4 (RGBA), "
                                      f"got {value.dtype} {value.shape}")
            return _encode_png(Image.fromarray(value))
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(value, str):
        raise ImageInputError(f"{name}: unsupported type {type(value).__name__}; pass bytes, a path, a PIL image, "
                              "a numpy array, base64, a data URI or an http(s) URL")
    text = value.strip()
    if text.startswith(("http://", "https://")):
        return fetch_url(text, max_bytes, timeout)
    match = _DATA_URI.match(text)
    if match:
        if not match.group("b64"):
            raise ImageInputError(f"{name}: only base64 data URIs are supported")
        return _b64decode(match.group("data"), name)
    if len(text) < 4096 and Path(text).expanduser().is_file():
        return Path(text).expanduser().read_bytes()
    decoded = _try_b64(text)
    if decoded is not None and (len(text) >= 4096 or decoded.startswith(_IMAGE_MAGIC)):
        return decoded
    if len(text) < 4096 and (text.startswith(("/", "./", "~")) or "/" in text or "\\" in text):
        raise ImageInputError(f"{name}: no such file {text[:200]!r}")
    if decoded is not None:
        return decoded
    raise ImageInputError(f"{name}: not a path, URL, data URI or valid base64 string")


# Leading bytes of the formats a base64 string is likely to carry (used only to tell base64 from paths).
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00")


def _try_b64(text: str) -> bytes | None:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64decode(text: str, name: str) -> bytes:
    decoded = _try_b64(text)
    if decoded is None:
        raise ImageInputError(f"{name}: not a path, URL, data URI or valid base64 string")
    return decoded


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def to_data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{to_base64(data)}"


def upload(url: str, data: bytes, content_type: str, timeout: float = 60.0) -> None:
    """HTTP PUT to a presigned URL (S3, GCS, Azure SAS...)."""
    req = urllib.request.Request(url, data=data, method="PUT",
                                 headers={"Content-Type": content_type, "Content-Length": str(len(data))})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if resp.status >= 300:
                raise UploadError(f"upload to {url.split('?')[0]}: HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        raise UploadError(f"upload to {url.split('?')[0]}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise UploadError(f"upload to {url.split('?')[0]}: {getattr(exc, 'reason', exc)}") from None
