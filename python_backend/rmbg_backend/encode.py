"""Encode output pixels as PNG / WEBP / JPG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

CONTENT_TYPES = {"PNG": "image/png", "WEBP": "image/webp", "JPG": "image/jpeg"}
# zlib level 1 encodes the eval cut-outs 4.2x faster than Pillow's default 6 for files about
# 10% larger (median; perf/results/encode_png_levels.json).
PNG_COMPRESS_LEVEL = 1


def resolve_auto(pixels: np.ndarray, mode: str) -> tuple[np.ndarray, str, str]:
    """``outputFormat`` AUTO: PNG when the result has any transparency, else JPG.

    A mask (mode L) is transparency itself and stays lossless PNG; an RGBA result whose alpha
    is opaque everywhere loses nothing as RGB JPG. Returns (pixels, mode, format).
    """
    if mode == "L" or (mode == "RGBA" and int(pixels[:, :, 3].min()) < 255):
        return pixels, mode, "PNG"
    return (np.ascontiguousarray(pixels[:, :, :3]) if mode == "RGBA" else pixels), "RGB", "JPG"


def encode(
    pixels: np.ndarray,
    mode: str,
    fmt: str,
    quality: int = 95,
    icc_profile: bytes | None = None,
    png_compress_level: int = PNG_COMPRESS_LEVEL,
) -> tuple[bytes, str]:
    """Return (encoded bytes, content type). PNG is lossless: ``quality`` applies to WEBP/JPG."""
    if fmt == "AUTO":
        pixels, mode, fmt = resolve_auto(pixels, mode)
    im = Image.fromarray(pixels, mode=mode)
    buf = io.BytesIO()
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    if fmt == "PNG":
        im.save(buf, format="PNG", compress_level=png_compress_level, **extra)
    elif fmt == "WEBP":
        im.save(buf, format="WEBP", quality=quality, method=4, **extra)
    elif fmt == "JPG":
        if im.mode not in ("RGB", "L"):
            raise ValueError(f"JPG output needs RGB or L pixels, got {im.mode}")
        im.save(buf, format="JPEG", quality=quality, **extra)
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    return buf.getvalue(), CONTENT_TYPES[fmt]
