"""Decode any common image into RGB + optional alpha, refusing bombs before full decoding."""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rmbg_backend.errors import RequestError

try:  # HEIF/HEIC (and AVIF on older Pillow) through the maintained plugin, when installed
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - optional plugin
    pass

# Our own limit below is the one that counts; Pillow's warning threshold would only add noise.
Image.MAX_IMAGE_PIXELS = None

ACCEPTED = "JPEG, PNG, WebP, GIF, TIFF, BMP, AVIF/HEIF (where available) and other formats Pillow reads"
_MAX_ICC_BYTES = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Safe defaults: 50 MB encoded in, 50 megapixels decoded (about 200 MB as RGBA), 200 MB out.

    Set per deployment through the ``limits`` parameter of the pre/post models' config.
    """

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_side: int = 30_000
    max_output_bytes: int = 200 * 1024 * 1024


@dataclass
class DecodedImage:
    rgb: np.ndarray  # H x W x 3 uint8, C-contiguous
    alpha: np.ndarray | None  # H x W uint8, or None when the input has no alpha channel
    format: str
    icc_profile: bytes | None = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    """Scale 16/32-bit integer or float samples to 0..255 instead of clipping them."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        top = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(arr) * (255.0 / top), 0, 255).round().astype(np.uint8)
    top = 65535 if int(arr.max(initial=0)) > 255 else 255
    return (arr.astype(np.float32) * (255.0 / top)).round().astype(np.uint8)


def _pixels(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _to_8bit(np.asarray(im))
        return np.repeat(gray[:, :, None], 3, axis=2), None
    has_alpha = mode in ("RGBA", "LA", "La", "PA", "RGBa") or (
        mode == "P" and "transparency" in im.info
    ) or (mode in ("L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3])
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im), None


_BYTES_REPR = re.compile(r"""b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*"|(?:\\x[0-9a-fA-F]{2}){2,}""")


def _reason(exc: Exception) -> str:
    """Pillow's message without any quoted input bytes (an error must never echo what it was sent)."""
    return _BYTES_REPR.sub("<bytes>", str(exc))[:200] or type(exc).__name__


def decode_image(data: bytes, *, field: str = "IMAGE", limits: Limits = Limits()) -> DecodedImage:
    """Decode ``data``; every failure is a RequestError naming ``field`` and what is accepted."""
    if not data:
        raise RequestError(field, f"is empty (0 bytes); send an encoded image ({ACCEPTED})")
    if len(data) > limits.max_bytes:
        raise RequestError(
            field, f"is {len(data):,} bytes, over the limit of {limits.max_bytes:,} bytes"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise RequestError(
            field, f"is not a recognised image; accepted: {ACCEPTED}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on hostile headers
        raise RequestError(field, f"could not be read: {_reason(exc)}") from None
    width, height = im.size
    if width < 1 or height < 1:
        raise RequestError(field, f"has an empty size {width}x{height}")
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise RequestError(
            field,
            f"declares {width}x{height} pixels, over the limit of {limits.max_pixels:,} pixels "
            f"(and {limits.max_side} per side)",
        )
    fmt = im.format or "unknown"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.seek(0)  # animated GIF/WebP/APNG: the first frame
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb, alpha = _pixels(im)
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt data raises OSError, SyntaxError...
        raise RequestError(field, f"is truncated or corrupt ({fmt}): {_reason(exc)}") from None
    icc = im.info.get("icc_profile")
    if not isinstance(icc, bytes) or len(icc) > _MAX_ICC_BYTES:
        icc = None
    return DecodedImage(np.ascontiguousarray(rgb), alpha, fmt, icc)
