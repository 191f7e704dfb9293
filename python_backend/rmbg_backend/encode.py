"""Encode output pixels as PNG / WEBP / JPG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from rmbg_backend.colour import profile_for_mode
from rmbg_backend.errors import RequestError

CONTENT_TYPES = {"PNG": "image/png", "WEBP": "image/webp", "JPG": "image/jpeg"}
# zlib level 1 encodes the eval cut-outs 4.2x faster than Pillow's default 6 for files about
# 10% larger (median; perf/results/encode_png_levels.json).
PNG_COMPRESS_LEVEL = 1
# Largest side each format can store: WebP's 14-bit size fields, libjpeg's JPEG_MAX_DIMENSION.
MAX_SIDE = {"WEBP": 16383, "JPG": 65500, "PNG": 2**31 - 1}
MAX_SIDE["AUTO"] = min(MAX_SIDE["PNG"], MAX_SIDE["JPG"])  # AUTO may end as either


def check_output_size(fmt: str, width: int, height: int) -> None:
    """Refuse (as the caller's choice of format) a result the format cannot hold.

    Called before the model runs, so an impossible request costs no inference.
    """
    side = MAX_SIDE[fmt]
    if width > side or height > side:
        others = " or ".join(f for f in ("PNG", "JPG") if f != fmt and MAX_SIDE[f] >= max(width, height)) or "PNG"
        raise RequestError(
            "outputFormat",
            f"{fmt} holds at most {side} pixels per side and the result is {width}x{height}; ask for {others}",
        )


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
    """Return (encoded bytes, content type). PNG is lossless: ``quality`` applies to WEBP/JPG.

    A mask (mode L) is exact 8-bit grayscale wherever the format allows it: PNG grayscale,
    lossless WebP (which stores gray as equal R, G and B), and grayscale JPEG (lossy by
    nature). The ICC profile is attached only when it describes ``mode``'s colour channels,
    so a mask never carries one. ``AUTO`` becomes PNG or JPG here, from the pixels.
    """
    if fmt == "AUTO":
        pixels, mode, fmt = resolve_auto(pixels, mode)
    check_output_size(fmt, pixels.shape[1], pixels.shape[0])
    im = Image.fromarray(pixels, mode=mode)
    buf = io.BytesIO()
    profile = profile_for_mode(icc_profile, mode)
    extra = {"icc_profile": profile} if profile else {}
    if fmt == "PNG":
        im.save(buf, format="PNG", compress_level=png_compress_level, **extra)
    elif fmt == "WEBP":
        lossy = {"lossless": True, "exact": True} if mode == "L" else {"quality": quality}
        im.save(buf, format="WEBP", method=4, **lossy, **extra)
    elif fmt == "JPG":
        if im.mode not in ("RGB", "L"):
            raise ValueError(f"JPG output needs RGB or L pixels, got {im.mode}")
        im.save(buf, format="JPEG", quality=quality, **extra)
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    return buf.getvalue(), CONTENT_TYPES[fmt]
