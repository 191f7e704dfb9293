"""Malformed and hostile inputs, generated (nothing binary is committed).

Each case says what must happen: ``ok`` (the request succeeds) or the text the per-request
error must contain. Used by the unit tests (the pure library) and by the real-server test,
which sends them mixed with valid requests.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    image: bytes
    options: str | bytes = "{}"
    background: bytes | None = None
    expect: str = "ok"  # "ok" or a fragment of the error message


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, payload: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(payload or b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def png_zlib_bomb() -> bytes:
    """12000 x 12000 black RGB: about 430 MB decoded from a file of a few hundred KB."""
    row = b"\0" + b"\0" * (12000 * 3)
    comp = zlib.compressobj(1)
    data = b"".join(comp.compress(row) for _ in range(12000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def gif_declaring(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b"\x2c" + struct.pack(
        "<HHHH", 0, 0, width, height) + b"\x00\x02\x02\x4c\x01\x00\x3b"


def _sample(mode: str = "RGB", size: tuple[int, int] = (96, 64)) -> Image.Image:
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], axis=2).astype(np.uint8)
    im = Image.fromarray(rgb)
    return im if mode == "RGB" else im.convert(mode)


def encoded(fmt: str, im: Image.Image | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    (im or _sample()).save(buf, format=fmt, **kw)
    return buf.getvalue()


FORMATS = {"JPEG": {}, "PNG": {}, "WEBP": {}, "GIF": {}, "TIFF": {}, "BMP": {}, "AVIF": {}}


def build() -> list[Case]:
    cases: list[Case] = []
    for fmt, kw in FORMATS.items():
        data = encoded(fmt, **kw)
        cases.append(Case(f"{fmt.lower()}-zero-bytes", b"", expect="IMAGE: is empty"))
        cases.append(Case(f"{fmt.lower()}-truncated-header", data[:12], expect="IMAGE:"))
        cases.append(Case(f"{fmt.lower()}-truncated-half", data[: len(data) // 2], expect="IMAGE:"))
        cases.append(Case(f"{fmt.lower()}-valid", data))
    jpeg = encoded("JPEG")
    cases += [
        Case("png-magic-on-jpeg-body", b"\x89PNG\r\n\x1a\n" + jpeg[8:], expect="IMAGE:"),
        Case("jpeg-magic-on-png-body", b"\xff\xd8\xff\xe0" + encoded("PNG")[4:], expect="IMAGE:"),
        Case("gif-magic-then-garbage", b"GIF89a" + bytes(range(256)) * 4, expect="IMAGE:"),
        Case("riff-without-webp", b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\0" * 64, expect="IMAGE:"),
        Case("bmp-magic-only", b"BM" + b"\xff" * 60, expect="IMAGE:"),
        Case("declared-30000x30000-png", png_declaring(30000, 30000), expect="over the limit"),
        Case("declared-100000x10-png", png_declaring(100000, 10), expect="over the limit"),
        Case("declared-65535x65535-gif", gif_declaring(65535, 65535), expect="over the limit"),
        Case("zlib-bomb-12000x12000-png", png_zlib_bomb(), expect="over the limit"),
        Case("declared-0x0-png", png_declaring(0, 0), expect="IMAGE:"),
        Case("one-pixel-png", encoded("PNG", _sample(size=(1, 1)))),
        Case("one-pixel-jpeg", encoded("JPEG", _sample(size=(1, 1)))),
        Case("one-row-png", encoded("PNG", _sample(size=(300, 1)))),
        Case("oversized-exif-jpeg", encoded("JPEG", exif=b"Exif\x00\x00" + b"\x00" * 60000)),
        Case("oversized-icc-png", encoded("PNG", icc_profile=b"\x00" * (2 << 20)),
             expect="Decompressed data too large"),
        Case("bogus-exif-orientation", encoded("JPEG", exif=_exif_orientation(99))),
        Case("mode-1-bit", encoded("PNG", _sample("1"))),
        Case("mode-I16", encoded("PNG", Image.fromarray(np.full((40, 50), 40000, np.uint16)))),
        Case("mode-F-tiff",
             encoded("TIFF", Image.fromarray(np.linspace(0, 1, 2000, dtype=np.float32).reshape(40, 50)))),
        Case("mode-CMYK-tiff", encoded("TIFF", _sample("CMYK"))),
        Case("mode-LAB-tiff", encoded("TIFF", _sample("LAB"))),
        Case("mode-YCbCr-jpeg", encoded("JPEG", _sample("YCbCr"))),
        Case("mode-P-no-transparency", encoded("PNG", _sample("P"))),
        Case("animated-gif-many-frames", _animated_gif(40)),
        Case("plain-text", b"hello, this is not an image\n" * 20, expect="not a recognised image"),
        Case("pdf-header", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", expect="not a recognised image"),
        Case("zip-archive", b"PK\x03\x04" + b"\0" * 100, expect="not a recognised image"),
        Case("elf-binary", b"\x7fELF\x02\x01\x01" + b"\0" * 100, expect="not a recognised image"),
        Case("html", b"<!doctype html><html><body><img src=x></body></html>", expect="not a recognised image"),
        Case("svg-xml", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', expect="IMAGE:"),
        Case("random-bytes", np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
             expect="IMAGE:"),
        Case("options-not-json", jpeg, "{not json", expect="OPTIONS: is not valid JSON"),
        Case("options-array", jpeg, "[1, 2]", expect="OPTIONS: must be a JSON object"),
        Case("options-string", jpeg, '"PNG"', expect="OPTIONS: must be a JSON object"),
        Case("options-null", jpeg, "null", expect="OPTIONS: must be a JSON object"),
        Case("options-not-utf8", jpeg, b"\xff\xfe{}", expect="OPTIONS: must be UTF-8"),
        Case("options-deeply-nested", jpeg, "[" * 30000 + "]" * 30000, expect="OPTIONS: is nested too deeply"),
        Case("options-too-large", jpeg, '{"rgba": [1, 2, 3, 4]' + " " * 70000 + "}", expect="over the limit"),
        Case("options-unknown-key", jpeg, '{"bgColor": "red"}', expect="bgColor: unknown option"),
        Case("options-quality-5", jpeg, '{"outputQuality": 5}', expect="outputQuality: must be in 20..99"),
        Case("options-quality-string", jpeg, '{"outputQuality": "high"}', expect="outputQuality: must be an integer"),
        Case("options-rgba-3", jpeg, '{"rgba": [1, 2, 3]}', expect="rgba: must be a list of 4"),
        Case("options-rgba-negative", jpeg, '{"rgba": [1, 2, 3, -1]}', expect="rgba: a must be in 0..255"),
        Case("options-threshold-300", jpeg, '{"alphaMattingForegroundThreshold": 300}',
             expect="alphaMattingForegroundThreshold: must be in 1..255"),
        Case("options-erode-0", jpeg, '{"alphaMattingErodeSize": 0}',
             expect="alphaMattingErodeSize: must be in 1..255"),
        Case("options-bool-as-int", jpeg, '{"returnOnlyMask": 1}', expect="returnOnlyMask: must be true or false"),
        Case("options-format-gif", jpeg, '{"outputFormat": "GIF"}', expect="outputFormat: must be one of"),
        Case("options-huge-number", jpeg, '{"outputQuality": 1e308}', expect="outputQuality: must be in 20..99"),
        Case("options-nan", jpeg, '{"outputQuality": NaN}', expect="outputQuality:"),
        Case("background-not-image", jpeg, "{}", background=b"not an image at all", expect="BACKGROUND:"),
        Case("background-empty", jpeg, "{}", background=b"", expect="BACKGROUND: is empty"),
        Case("background-bomb", jpeg, "{}", background=png_declaring(30000, 30000), expect="BACKGROUND: declares"),
        Case("background-truncated", jpeg, "{}", background=jpeg[:200], expect="BACKGROUND:"),
    ]
    return cases


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def _animated_gif(frames: int) -> bytes:
    imgs = [_sample().rotate(i * 9) for i in range(frames)]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=40)
    return buf.getvalue()


CASES = build()
