"""Byte-level builders for images Pillow cannot or will not write: containers holding bombs,
animations with huge frame counts, hand-made ICC profiles, TIFFs with any sample format.

Everything is generated at import time of the corpus; nothing binary is committed.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zeros_deflate(n_bytes: int, block: int = 1 << 20) -> bytes:
    """A valid zlib stream of ``n_bytes`` zeros, built from one compressed block repeated.

    A full flush leaves each block byte-aligned and independent of the ones before, so 1 GB
    of zeros costs one 1 MB compression; the Adler-32 of n zeros is (n mod 65521) << 16 | 1.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: we write header and checksum
    unit = comp.compress(b"\0" * block) + comp.flush(zlib.Z_FULL_FLUSH)
    count = max(1, n_bytes // block)
    checksum = (((count * block) % 65521) << 16) | 1
    return b"\x78\xda" + unit * count + b"\x03\x00" + struct.pack(">I", checksum)


def png_gray(width: int, height: int, idat: bytes | None = None, bit_depth: int = 8, extra: bytes = b"") -> bytes:
    """Grayscale PNG; ``idat`` defaults to all-black rows (cheap to build at any size)."""
    if idat is None:
        comp = zlib.compressobj(9)
        row = b"\0" * (1 + width * bit_depth // 8)
        idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def ico_holding(png: bytes, declared: int = 0, magic: int = 1) -> bytes:
    """An ICO (magic 1) or CUR (2) whose single entry is ``png``; ``declared`` 0 means 256 px."""
    entry = struct.pack("<BBBBHHII", declared, declared, 0, 0, 1, 32, len(png), 6 + 16)
    return struct.pack("<HHH", 0, magic, 1) + entry + png


def icns_holding(png: bytes, kind: bytes = b"ic10") -> bytes:
    """An ICNS whose ``ic10`` (declared 1024 px) element is ``png``."""
    element = kind + struct.pack(">I", len(png) + 8) + png
    return b"icns" + struct.pack(">I", len(element) + 8) + element


def _webp_one_pixel_vp8l() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 30, 30)).save(buf, format="WEBP", lossless=True)
    return buf.getvalue()[12:]  # the VP8L chunk


def webp_animation(frames: int, canvas: tuple[int, int] = (1, 1)) -> bytes:
    """An animated WebP of ``frames`` one-pixel frames on a ``canvas`` (VP8X + ANIM + ANMF...)."""
    vp8l = _webp_one_pixel_vp8l()
    payload = b"\0" * 12 + b"\x28\0\0" + b"\0" + vp8l  # x, y, w-1, h-1 (all 0), 40 ms, flags
    anmf = b"ANMF" + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")
    w, h = canvas
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x02\0\0\0" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(
        3, "little")
    anim = b"ANIM" + struct.pack("<I", 6) + b"\0" * 6
    body = b"WEBP" + vp8x + anim + anmf * frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_vp8l_declaring(width: int, height: int) -> bytes:
    """A lossless WebP header declaring width x height, with one pixel's worth of data."""
    chunk = bytearray(_webp_one_pixel_vp8l())
    bits = int.from_bytes(chunk[9:13], "little")
    bits = (bits & ~((1 << 28) - 1)) | ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14)
    chunk[9:13] = bits.to_bytes(4, "little")
    body = b"WEBP" + bytes(chunk)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def gif_frames(sizes: list[tuple[int, int]], screen: tuple[int, int]) -> bytes:
    """A GIF whose frames have the given sizes (LZW data for one pixel each: Pillow reads the
    descriptor of the first frame, and grows the image to it, while opening)."""
    out = bytearray(b"GIF89a" + struct.pack("<HH", *screen) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff")
    for w, h in sizes:
        out += b"\x2c" + struct.pack("<HHHH", 0, 0, w, h) + b"\x00" + b"\x02\x02\x44\x01\x00"
    return bytes(out + b"\x3b")


def animated(fmt: str, frames: int, size: tuple[int, int] = (2, 2)) -> bytes:
    """A real animation Pillow writes (GIF, APNG, WebP, MPO), frames alternating in colour so
    no encoder merges them."""
    colours = [(255, 0, 0), (0, 0, 255)]
    images = [Image.new("RGB", size, colours[i % 2]) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, format=fmt, save_all=True, append_images=images[1:], **({"duration": 40} if fmt != "MPO"
                                                                                   else {}))
    return buf.getvalue()


def apng_declaring(frames: int) -> bytes:
    """A two-frame APNG whose acTL chunk claims ``frames`` frames."""
    data = bytearray(animated("PNG", 2))
    at = data.index(b"acTL") - 4
    body = struct.pack(">II", frames, 0)
    data[at:at + 20] = png_chunk(b"acTL", body)
    return bytes(data)


# --- TIFF ------------------------------------------------------------------------------------

_TIFF_TYPES = {"B": (1, 1), "H": (3, 2), "I": (4, 4), "f": (11, 4), "d": (12, 8)}


def tiff(pages: list[dict]) -> bytes:
    """A little-endian baseline TIFF of uncompressed pages.

    Each page: ``pixels`` (H x W or H x W x S numpy array; its dtype gives bits and sample
    format) and optionally ``photometric`` and ``tags`` ({code: (struct code, values)}).
    """
    out = bytearray(b"II*\0\0\0\0\0")
    ifd_offsets = []
    for page in pages:
        px = np.ascontiguousarray(page["pixels"])
        h, w = px.shape[:2]
        samples = 1 if px.ndim == 2 else px.shape[2]
        bits = px.dtype.itemsize * 8
        fmt = {"u": 1, "i": 2, "f": 3}[px.dtype.kind]
        data_at = len(out)
        out += px.astype(px.dtype.newbyteorder("<")).tobytes()
        if len(out) % 2:
            out += b"\0"
        photometric = page.get("photometric", 2 if samples >= 3 else 1)
        tags = {256: ("I", [w]), 257: ("I", [h]), 258: ("H", [bits] * samples), 259: ("H", [1]),
                262: ("H", [photometric]), 273: ("I", [data_at]), 277: ("H", [samples]), 278: ("I", [h]),
                279: ("I", [px.nbytes]), 284: ("H", [1]), 339: ("H", [fmt] * samples)}
        if samples == 4 and photometric == 2:
            tags[338] = ("H", [2])  # ExtraSamples: unassociated alpha
        tags.update(page.get("tags", {}))
        ifd_offsets.append(len(out))
        entries, blobs = [], bytearray()
        blob_at = len(out) + 2 + 12 * len(tags) + 4
        for code in sorted(tags):
            kind, values = tags[code]
            type_id, size = _TIFF_TYPES[kind]
            raw = struct.pack("<" + kind * len(values), *values)
            if len(raw) <= 4:
                value = raw.ljust(4, b"\0")
            else:
                value = struct.pack("<I", blob_at + len(blobs))
                blobs += raw + (b"\0" if len(raw) % 2 else b"")
            entries.append(struct.pack("<HHI", code, type_id, len(values)) + value)
        out += struct.pack("<H", len(tags)) + b"".join(entries) + b"\0\0\0\0" + blobs
    struct.pack_into("<I", out, 4, ifd_offsets[0])
    for this, nxt in zip(ifd_offsets, ifd_offsets[1:], strict=False):
        n = struct.unpack_from("<H", out, this)[0]
        struct.pack_into("<I", out, this + 2 + 12 * n, nxt)
    return bytes(out)


def tiff_pages(count: int, first: np.ndarray | None = None) -> bytes:
    """A multi-page TIFF: ``first`` then ``count - 1`` one-pixel pages."""
    first = np.full((8, 8, 3), 90, np.uint8) if first is None else first
    return tiff([{"pixels": first}] + [{"pixels": np.zeros((1, 1, 3), np.uint8)}] * (count - 1))


# --- ICC profiles ----------------------------------------------------------------------------

def _s15(x: float) -> bytes:
    return struct.pack(">i", round(x * 65536))


def _desc(text: str) -> bytes:
    ascii_ = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 8 + b"\0\0\0" + b"\0" * 67


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def icc_profile(device_class: bytes, space: bytes, pcs: bytes, tags: dict[bytes, bytes]) -> bytes:
    """An ICC v2 profile with ``tags`` (plus desc, wtpt and cprt)."""
    tags = {b"desc": _desc("rmbg test profile"), b"wtpt": b"XYZ \0\0\0\0" + _s15(0.9642) + _s15(1.0) + _s15(0.8249),
            b"cprt": b"text\0\0\0\0no copyright, test data\0", **tags}
    table_len = 4 + 12 * len(tags)
    offset, entries, body = 128 + table_len, [], b""
    for sig, data in tags.items():
        data = _pad4(data)
        entries.append(sig + struct.pack(">II", offset + len(body), len(data)))
        body += data
    size = 128 + table_len + len(body)
    header = (struct.pack(">I", size) + b"\0" * 4 + b"\x02\x10\0\0" + device_class + space + pcs + b"\0" * 12
              + b"acsp" + b"\0" * 24 + b"\0\0\0\0" + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(entries) + body


def gray_profile(gamma: float = 1.0) -> bytes:
    """A grayscale display profile with the given tone curve (1.0: linear light)."""
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))
    return icc_profile(b"mntr", b"GRAY", b"XYZ ", {b"kTRC": curve})


def swapped_cmyk_profile() -> bytes:
    """A CMYK profile whose colours are the naive complement with red and green exchanged.

    Cyan ink alone (naive: RGB 0, 255, 255) is therefore magenta (255, 0, 255) through this
    profile: a decoder that uses it and one that ignores it give different colours.
    A 2-point-per-channel lut8 A2B0 whose 16 corners hold the Lab of those sRGB colours.
    """
    corners = []
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    r, g, b = ((1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k))
                    corners.append((round(g * 255), round(r * 255), round(b * 255)))
    rgb = Image.new("RGB", (16, 1))
    rgb.putdata(corners)
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB",
                                     ImageCms.Intent.PERCEPTUAL)
    lab = np.asarray(ImageCms.applyTransform(rgb, to_lab))[0].astype(np.int16)
    lab[:, 1:] = lab[:, 1:].astype(np.uint8).view(np.int8) + 128  # Pillow: signed a, b; lut8: offset 128
    identity = bytes(range(256))
    lut = (b"mft1\0\0\0\0" + bytes([4, 3, 2, 0]) + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
           + identity * 4 + lab.astype(np.uint8).tobytes() + identity * 3)
    return icc_profile(b"prtr", b"CMYK", b"Lab ", {b"A2B0": lut})


@lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    """LittleCMS's sRGB profile, built once (it stamps its creation time into the header)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()
