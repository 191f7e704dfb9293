"""Encode output pixels as PNG / WEBP / JPG.

PNG is the default output and its encoding was the largest per-request cost after the int8
engine made the model several times faster. Pillow's PNG encoder chooses a filter per row by
trying all five (adaptive filtering), which costs more than the deflate itself at zlib level 1.
Ours writes the same file format with one fixed filter (Sub, computed in numpy) and deflates
with zlib level 1 and the run-length strategy, cut into row strips compressed on several
threads for large images (zlib releases the GIL; the strips are joined as one deflate stream,
as pigz does). perf/bench_encode.py measures it against Pillow on the eval cut-outs.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from rmbg_backend.colour import profile_for_mode
from rmbg_backend.errors import RequestError

CONTENT_TYPES = {"PNG": "image/png", "WEBP": "image/webp", "JPG": "image/jpeg"}
# zlib level 1: 4.2x faster than Pillow's default 6 for files about 10% larger (median;
# perf/results/encode_png_levels.json); the level-1 choice stands with our encoder.
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}  # PNG colour type per mode, 8 bits per sample
_STRIP_BYTES = 1 << 20  # images above this many filtered bytes are deflated in parallel strips
_pool: ThreadPoolExecutor | None = None


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _sub_filtered(pixels: np.ndarray) -> np.ndarray:
    """Rows of filter type 1 (Sub): each byte minus the byte one pixel to its left, modulo 256."""
    h = pixels.shape[0]
    bpp = 1 if pixels.ndim == 2 else pixels.shape[2]
    flat = pixels.reshape(h, -1)
    rows = np.empty((h, flat.shape[1] + 1), np.uint8)
    rows[:, 0] = 1
    rows[:, 1:1 + bpp] = flat[:, :bpp]
    np.subtract(flat[:, bpp:], flat[:, :-bpp], out=rows[:, 1 + bpp:])  # uint8 arithmetic wraps
    return rows


def _deflate_strip(data: memoryview, level: int, last: bool) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_RLE)  # raw deflate: no header
    return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _zlib_stream(rows: np.ndarray, level: int) -> bytes:
    """One zlib stream; strips end byte-aligned (sync flush) so their deflate data concatenates.

    The header's level field is informational only (RFC 1950), so one header serves every level.
    """
    global _pool
    data = memoryview(rows).cast("B")
    strips = max(1, min(os.cpu_count() or 1, 8, data.nbytes // _STRIP_BYTES))
    if strips == 1:
        body = _deflate_strip(data, level, True)
    else:
        if _pool is None:
            _pool = ThreadPoolExecutor(min(os.cpu_count() or 1, 8), thread_name_prefix="png")
        bounds = np.linspace(0, rows.shape[0], strips + 1).astype(int) * rows.shape[1]
        body = b"".join(_pool.map(lambda i: _deflate_strip(data[bounds[i]:bounds[i + 1]], level, i == strips - 1),
                                  range(strips)))
    return b"\x78\x01" + body + struct.pack(">I", zlib.adler32(data))


def encode_png(pixels: np.ndarray, mode: str, icc_profile: bytes | None = None,
               level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """An 8-bit L / RGB / RGBA PNG of ``pixels`` (H x W or H x W x C uint8), with the ICC profile if any."""
    if mode not in _COLOR_TYPES or pixels.dtype != np.uint8:
        raise ValueError(f"PNG output needs uint8 L, RGB or RGBA pixels, got {mode} {pixels.dtype}")
    h, w = pixels.shape[:2]
    head = PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPES[mode], 0, 0, 0))
    if icc_profile:
        head += _chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile))
    idat = _zlib_stream(_sub_filtered(np.ascontiguousarray(pixels)), level)
    return head + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


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
    profile = profile_for_mode(icc_profile, mode)
    if fmt == "PNG":
        return encode_png(pixels, mode, profile, png_compress_level), CONTENT_TYPES[fmt]
    im = Image.fromarray(pixels, mode=mode)
    buf = io.BytesIO()
    extra = {"icc_profile": profile} if profile else {}
    if fmt == "WEBP":
        lossy = {"lossless": True, "exact": True} if mode == "L" else {"quality": quality}
        im.save(buf, format="WEBP", method=4, **lossy, **extra)
    elif fmt == "JPG":
        if im.mode not in ("RGB", "L"):
            raise ValueError(f"JPG output needs RGB or L pixels, got {im.mode}")
        im.save(buf, format="JPEG", quality=quality, **extra)
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    return buf.getvalue(), CONTENT_TYPES[fmt]
