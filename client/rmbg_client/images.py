"""The client library's image inputs: every form a Python caller holds an image in.

``to_image_bytes`` / ``to_image_bytes_async`` (``RmbgClient.remove``) take bytes, a path
(``pathlib.Path`` or a string naming an existing file), a PIL image, a numpy array, base64, a
data URI or an http(s) URL. Hosted-API requests are stricter (never a path): their inputs are
``rmbg_hosted.inputs``. URLs go through ``rmbg_hosted.fetch`` (address rules, one deadline, a byte
cap); inline base64 is refused above the same byte cap before it is decoded.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rmbg_hosted.errors import ImageInputError
from rmbg_hosted.fetch import DEFAULT_POLICY, FetchPolicy, fetch_async, run_sync
from rmbg_hosted.inputs import IMAGE_MAGIC, decode_inline, is_url, try_b64

_PATH_MAX = 4096


def _encode_png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


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
                raise ImageInputError(f"numpy arrays must be uint8 HxW, HxWx3 (RGB) or HxWx4 (RGBA), "
                                      f"got {value.dtype} {value.shape}", parameter=name)
            return _encode_png(Image.fromarray(value))
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(value, str):
        raise ImageInputError(f"unsupported type {type(value).__name__}; pass bytes, a path, a PIL image, "
                              "a numpy array, base64, a data URI or an http(s) URL", parameter=name)
    text = value.strip()
    if is_url(text):
        return None
    if text.startswith("data:"):
        return decode_inline(text, name, DEFAULT_POLICY.max_bytes)
    if len(text) < _PATH_MAX and Path(text).expanduser().is_file():
        return _read_path(Path(text).expanduser(), name)
    decoded = try_b64(text)
    if decoded is not None and (len(text) >= _PATH_MAX or decoded.startswith(IMAGE_MAGIC)):
        return decode_inline(text, name, DEFAULT_POLICY.max_bytes)
    if len(text) < _PATH_MAX and (text.startswith(("/", "./", "~")) or "/" in text or "\\" in text):
        raise ImageInputError("no such file (a string naming a path must name an existing file)", parameter=name)
    if decoded is not None:
        return decoded
    raise ImageInputError("not a path, URL, data URI or valid base64 string", parameter=name)


def _read_path(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"cannot read {path}: {exc.strerror}", parameter=name) from None


def to_image_bytes(value: Any, *, policy: FetchPolicy = DEFAULT_POLICY, name: str = "image") -> bytes:
    """bytes, a path, a PIL image, a numpy array, base64, a data URI or an http(s) URL -> encoded bytes."""
    local = _local_value(value, name)
    return local if local is not None else run_sync(fetch_async(value.strip(), policy, what=name))


async def to_image_bytes_async(value: Any, *, policy: FetchPolicy = DEFAULT_POLICY, name: str = "image") -> bytes:
    """``to_image_bytes`` for asyncio code (the URL fetch does not block the loop)."""
    local = _local_value(value, name)
    return local if local is not None else await fetch_async(value.strip(), policy, what=name)
