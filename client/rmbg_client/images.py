"""Client-side image inputs and outputs: the forms platforms pass around.

Two entry points, on purpose:
- ``to_image_bytes`` / ``to_image_bytes_async``: the library's explicit API (``RmbgClient.remove``):
  bytes, a path (``pathlib.Path`` or a string naming an existing file), a PIL image, a numpy
  array, base64, a data URI or an http(s) URL;
- ``task_image_bytes_async``: what a hosted-API task may carry in ``inputs.image``: an http(s) URL,
  a data URI or base64 only. A task is data from someone else, so it never reads a local file.
URLs go through ``rmbg_client.fetch`` (address rules, one deadline, a byte cap); inline base64
is refused above the same byte cap before it is decoded. No error message quotes input bytes.
"""

from __future__ import annotations

import binascii
import io
import re
from pathlib import Path
from typing import Any

from rmbg_client.errors import ImageInputError
from rmbg_client.fetch import DEFAULT_POLICY, FetchPolicy, fetch_async, run_sync

try:  # SIMD base64 (the server and gateway extras install it): a 1.2 MB cut-out in 0.1 ms, not 3.5
    from pybase64 import b64decode as _b64decode
    from pybase64 import b64encode as _b64encode
except ImportError:  # the client-only install: the standard library, same results
    from base64 import b64decode as _b64decode
    from base64 import b64encode as _b64encode

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+/-]*)(?:;[\w=.-]+)*?(?P<b64>;base64)?,(?P<data>.*)$", re.S)
# Leading bytes of the formats a base64 string is likely to carry (used only to tell base64 from paths).
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00")
_PATH_MAX = 4096


def _encode_png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def is_url(text: str) -> bool:
    return text.lstrip()[:8].lower().startswith(("http://", "https://"))


def decode_inline(text: str, name: str, max_bytes: int) -> bytes:
    """A data URI or a base64 string -> bytes, refusing more than ``max_bytes`` before decoding."""
    text = text.strip()
    match = _DATA_URI.match(text[:512])  # the header is short; the payload is sliced below
    payload = text
    if match:
        if not match.group("b64"):
            raise ImageInputError(f"{name}: only base64 data URIs are accepted (data:<type>;base64,...)")
        payload = text[text.index(",") + 1:]
    if len(payload) > max_bytes * 14 // 10 + 16:  # base64 is 4/3 of the bytes, plus room for line breaks
        raise ImageInputError(f"{name}: about {len(payload) * 3 // 4:,} bytes of base64, over the "
                              f"{max_bytes:,}-byte limit")
    decoded = _try_b64(payload)
    if decoded is None:
        kind = "data URI payload" if match else "value"
        raise ImageInputError(f"{name}: the {kind} is not valid base64; send an http(s) URL, a data URI "
                              "(data:image/png;base64,...) or base64 text")
    if len(decoded) > max_bytes:
        raise ImageInputError(f"{name}: {len(decoded):,} bytes, over the {max_bytes:,}-byte limit")
    return decoded


async def task_image_bytes_async(value: Any, policy: FetchPolicy = DEFAULT_POLICY, *,
                                 name: str = "inputs.image") -> bytes:
    """A task's image: an http(s) URL (fetched under ``policy``), a data URI or base64. Never a file."""
    if not isinstance(value, str) or not value.strip():
        raise ImageInputError(f"{name}: must be a non-empty string: an http(s) URL, a data URI or base64")
    if is_url(value):
        return await fetch_async(value.strip(), policy, what=name)
    if "://" in value[:16]:
        raise ImageInputError(f"{name}: only http and https URLs are accepted, got scheme "
                              f"{value.split('://', 1)[0][:16]!r}")
    if _looks_like_path(value):
        raise ImageInputError(f"{name}: local file paths are never read from a task; send an http(s) URL, "
                              "a data URI or base64")
    return decode_inline(value, name, policy.max_bytes)


def _looks_like_path(text: str) -> bool:
    text = text.strip()
    return len(text) < _PATH_MAX and (text.startswith(("/", "./", "../", "~", "file:")) or "\\" in text) and (
        _try_b64(text) is None or Path(text).expanduser().exists())


def _local_value(value: Any, name: str) -> bytes | None:
    """Everything but URLs: bytes, paths, PIL images, arrays, inline base64. None for a URL string."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, Path):
        return _read_path(value, name)
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
    if is_url(text):
        return None
    if text.startswith("data:"):
        return decode_inline(text, name, DEFAULT_POLICY.max_bytes)
    if len(text) < _PATH_MAX and Path(text).expanduser().is_file():
        return _read_path(Path(text).expanduser(), name)
    decoded = _try_b64(text)
    if decoded is not None and (len(text) >= _PATH_MAX or decoded.startswith(_IMAGE_MAGIC)):
        return decode_inline(text, name, DEFAULT_POLICY.max_bytes)
    if len(text) < _PATH_MAX and (text.startswith(("/", "./", "~")) or "/" in text or "\\" in text):
        raise ImageInputError(f"{name}: no such file (a string naming a path must name an existing file)")
    if decoded is not None:
        return decoded
    raise ImageInputError(f"{name}: not a path, URL, data URI or valid base64 string")


def _read_path(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"{name}: cannot read {path}: {exc.strerror}") from None


def to_image_bytes(value: Any, *, policy: FetchPolicy = DEFAULT_POLICY, name: str = "image") -> bytes:
    """bytes, a path, a PIL image, a numpy array, base64, a data URI or an http(s) URL -> encoded bytes."""
    local = _local_value(value, name)
    return local if local is not None else run_sync(fetch_async(value.strip(), policy, what=name))


async def to_image_bytes_async(value: Any, *, policy: FetchPolicy = DEFAULT_POLICY, name: str = "image") -> bytes:
    """``to_image_bytes`` for asyncio code (the URL fetch does not block the loop)."""
    local = _local_value(value, name)
    return local if local is not None else await fetch_async(value.strip(), policy, what=name)


def _try_b64(text: str) -> bytes | None:
    try:
        return _b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:  # MIME-style base64 with line breaks
        return _b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def to_base64(data: bytes) -> str:
    return _b64encode(data).decode("ascii")


def to_data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{to_base64(data)}"
