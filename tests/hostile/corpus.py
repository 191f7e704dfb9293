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

from tests.hostile import builders as b
from tests.hostile.builders import png_chunk


@dataclass(frozen=True)
class Case:
    name: str
    image: bytes
    options: str | bytes = "{}"
    background: bytes | None = None
    expect: str = "ok"  # "ok" or a fragment of the error message
    kind: str = "malformed"  # the class of attack or oddity (KINDS), for the coverage check


# Every class the corpus must cover, with the least number of cases each (tests check it).
KINDS = {
    "malformed": 30,  # truncated, empty, wrong magic, not an image
    "declared-size": 5,  # headers declaring more pixels than the limit
    "container-bomb": 14,  # ICO/ICNS/CUR, multi-page TIFF, MPO, animated GIF/WebP/APNG, PNG inner bombs
    "pixel-format": 10,  # modes, bit depths, EXIF
    "icc": 7,  # non-RGB and mismatched colour profiles
    "options": 18,  # OPTIONS that are not what the schema accepts
    "huge-integer": 5,  # integers too long for Python's int() in OPTIONS
    "background": 8,  # BACKGROUND inputs: broken, bombs, extreme aspect ratios
    "output-size": 2,  # results a format cannot hold
}


def png_declaring(width: int, height: int, payload: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(payload or b"\0" * 64))
            + png_chunk(b"IEND", b""))


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
HUGE = "9" * 5000  # Python's int() refuses more than 4300 digits


def _malformed() -> list[Case]:
    cases = [Case("zero-bytes", b"", expect="IMAGE: is empty")]
    for fmt, kw in FORMATS.items():
        data = encoded(fmt, **kw)
        cases.append(Case(f"{fmt.lower()}-truncated-header", data[:12], expect="IMAGE:"))
        cases.append(Case(f"{fmt.lower()}-truncated-at-75-percent", data[: len(data) * 3 // 4], expect="IMAGE:"))
        cases.append(Case(f"{fmt.lower()}-truncated-half", data[: len(data) // 2], expect="IMAGE:"))
        cases.append(Case(f"{fmt.lower()}-valid", data))
    jpeg = encoded("JPEG")
    return cases + [
        Case("png-magic-on-jpeg-body", b"\x89PNG\r\n\x1a\n" + jpeg[8:], expect="IMAGE:"),
        Case("jpeg-magic-on-png-body", b"\xff\xd8\xff\xe0" + encoded("PNG")[4:], expect="IMAGE:"),
        Case("gif-magic-then-garbage", b"GIF89a" + bytes(range(256)) * 4, expect="IMAGE:"),
        Case("riff-without-webp", b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\0" * 64, expect="IMAGE:"),
        Case("bmp-magic-only", b"BM" + b"\xff" * 60, expect="IMAGE:"),
        Case("declared-0x0-png", png_declaring(0, 0), expect="IMAGE:"),
        Case("plain-text", b"hello, this is not an image\n" * 20, expect="not a recognised image"),
        Case("pdf-header", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", expect="not a recognised image"),
        Case("zip-archive", b"PK\x03\x04" + b"\0" * 100, expect="not a recognised image"),
        Case("elf-binary", b"\x7fELF\x02\x01\x01" + b"\0" * 100, expect="not a recognised image"),
        Case("html", b"<!doctype html><html><body><img src=x></body></html>", expect="not a recognised image"),
        Case("svg-xml", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', expect="IMAGE:"),
        Case("random-bytes", np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
             expect="IMAGE:"),
        Case("psd-header", b"8BPS\x00\x01" + b"\0" * 200, expect="not a recognised image"),
        Case("qoi-image", b"qoif" + struct.pack(">II", 4, 4) + b"\x03\x00" + b"\0" * 40,
             expect="not a recognised image"),
    ]


def _declared_size() -> list[Case]:
    return [Case(name, data, expect="over the limit", kind="declared-size") for name, data in [
        ("declared-30000x30000-png", png_declaring(30000, 30000)),
        ("declared-100000x10-png", png_declaring(100000, 10)),
        ("declared-65535x65535-gif", gif_declaring(65535, 65535)),
        ("declared-16383x16383-webp", b.webp_animation(1, canvas=(16383, 16383))),
        ("declared-16384x4000-webp-lossless", b.webp_vp8l_declaring(16384, 4000)),
        ("declared-9000x9000-tiff", b.tiff([{"pixels": np.zeros((1, 1), np.uint8),
                                             "tags": {256: ("I", [9000]), 257: ("I", [9000])}}])),
    ]]


def _container_bombs() -> list[Case]:
    bomb_png = b.png_gray(9000, 9000)  # 79 KB holding 81 MB of pixels
    frames = "frames, over the limit"
    return [Case(name, data, expect=expect, kind="container-bomb") for name, data, expect in [
        ("ico-holding-9000x9000-png", b.ico_holding(bomb_png), "ICO"),
        ("cur-holding-9000x9000-png", b.ico_holding(bomb_png, magic=2), "CUR"),
        ("icns-holding-9000x9000-png", b.icns_holding(bomb_png), "ICNS"),
        ("tiff-1001-pages", b.tiff_pages(1001), frames),
        ("tiff-first-page-small-second-huge", b.tiff([{"pixels": np.full((8, 8, 3), 90, np.uint8)},
                                                      {"pixels": np.zeros((1, 1), np.uint8),
                                                       "tags": {256: ("I", [60000]), 257: ("I", [60000])}}]), "ok"),
        ("mpo-1001-pictures", b.animated("MPO", 1001, (8, 8)), frames),
        ("mpo-two-pictures", b.animated("MPO", 2, (16, 16)), "ok"),
        ("gif-1001-frames", b.animated("GIF", 1001), frames),
        ("gif-frame-larger-than-screen", b.gif_frames([(20000, 20000)], (10, 10)), "over the limit"),
        ("gif-second-frame-huge", b.gif_frames([(1, 1), (60000, 60000)], (1, 1)), "ok"),
        ("apng-declaring-a-million-frames", b.apng_declaring(1_000_000), frames),
        ("apng-1001-frames", b.animated("PNG", 1001), frames),
        ("webp-100000-frames", b.webp_animation(100_000), frames),
        ("webp-9000x9000-canvas", b.webp_animation(2, canvas=(9000, 9000)), "over the limit"),
        ("png-idat-inflating-to-1gb", b.png_gray(64, 64, idat=b.zeros_deflate(1 << 30)), "ok"),
        ("png-ztxt-chunks-inflating-to-60mb", b.png_gray(16, 16, extra=b"".join(
            b.png_chunk(b"zTXt", b"k%d\0\0" % i + b.zeros_deflate(15 << 16, block=1 << 16)) for i in range(64))),
         "IMAGE:"),
        ("png-iccp-bomb", encoded("PNG", icc_profile=b"\x00" * (2 << 20)), "Decompressed data too large"),
    ]]


def _pixel_formats() -> list[Case]:
    gray16 = Image.fromarray(np.full((40, 50), 40000, np.uint16))
    return [Case(name, data, kind="pixel-format") for name, data in [
        ("one-pixel-png", encoded("PNG", _sample(size=(1, 1)))),
        ("one-pixel-jpeg", encoded("JPEG", _sample(size=(1, 1)))),
        ("one-row-png", encoded("PNG", _sample(size=(300, 1)))),
        ("one-column-png", encoded("PNG", _sample(size=(1, 300)))),
        ("oversized-exif-jpeg", encoded("JPEG", exif=b"Exif\x00\x00" + b"\x00" * 60000)),
        ("bogus-exif-orientation", encoded("JPEG", exif=b.exif_orientation(99))),
        ("exif-orientation-5-png", encoded("PNG", exif=b.exif_orientation(5))),
        ("mode-1-bit", encoded("PNG", _sample("1"))),
        ("mode-I16", encoded("PNG", gray16)),
        ("mode-I16-dark", encoded("PNG", Image.fromarray(np.full((40, 50), 199, np.uint16)))),
        ("mode-I32-tiff", b.tiff([{"pixels": np.arange(2000, dtype=np.int32).reshape(40, 50) * 1_000_000}])),
        ("mode-uint32-tiff", b.tiff([{"pixels": np.full((40, 50), 2**32 - 1, np.uint32)}])),
        ("mode-F-tiff", encoded("TIFF", Image.fromarray(np.linspace(0, 1, 2000, dtype=np.float32).reshape(40, 50)))),
        ("mode-F-tiff-above-one", b.tiff([{"pixels": np.linspace(-5, 40, 2000, dtype=np.float32).reshape(40, 50)}])),
        ("mode-F-tiff-nan-inf", b.tiff([{"pixels": np.array([[np.nan, np.inf, -np.inf, 0.5]], np.float32)}])),
        ("rgb16-tiff", b.tiff([{"pixels": np.full((20, 30, 3), 51400, np.uint16)}])),
        ("rgba16-tiff", b.tiff([{"pixels": np.full((20, 30, 4), 51400, np.uint16)}])),
        ("white-is-zero-16-tiff", b.tiff([{"pixels": np.full((20, 30), 1000, np.uint16), "photometric": 0}])),
        ("mode-CMYK-tiff", encoded("TIFF", _sample("CMYK"))),
        ("mode-LAB-tiff", b.tiff([{"pixels": np.full((20, 30, 3), (128, 10, 246), np.uint8), "photometric": 8}])),
        ("mode-YCbCr-jpeg", encoded("JPEG", _sample("YCbCr"))),
        ("mode-P-no-transparency", encoded("PNG", _sample("P"))),
        ("mode-LA-png", encoded("PNG", _sample("LA"))),
        ("animated-gif-40-frames", b.animated("GIF", 40, (96, 64))),
    ]]


def _icc() -> list[Case]:
    cmyk = _sample("CMYK")
    gray = _sample("L")
    garbage = b"\0" * 36 + b"acsp" + bytes(range(256)) * 2
    return [Case(name, data, kind="icc") for name, data in [
        ("cmyk-jpeg-with-cmyk-profile", encoded("JPEG", cmyk, icc_profile=b.swapped_cmyk_profile())),
        ("cmyk-tiff-with-cmyk-profile", encoded("TIFF", cmyk, icc_profile=b.swapped_cmyk_profile())),
        ("cmyk-jpeg-with-rgb-profile", encoded("JPEG", cmyk, icc_profile=b.srgb_profile())),
        ("gray-png-with-gray-profile", encoded("PNG", gray, icc_profile=b.gray_profile(1.0))),
        ("gray-png-with-rgb-profile", encoded("PNG", gray, icc_profile=b.srgb_profile())),
        ("rgb-jpeg-with-cmyk-profile", encoded("JPEG", icc_profile=b.swapped_cmyk_profile())),
        ("rgb-png-with-gray-profile", encoded("PNG", icc_profile=b.gray_profile(2.2))),
        ("rgb-webp-with-garbage-profile", encoded("WEBP", icc_profile=garbage)),
        ("cmyk-jpeg-with-garbage-cmyk-profile",
         encoded("JPEG", cmyk, icc_profile=garbage[:16] + b"CMYK" + garbage[20:])),
        ("la-png-with-gray-profile", encoded("PNG", _sample("LA"), icc_profile=b.gray_profile(1.8))),
    ]]


def _options(jpeg: bytes) -> list[Case]:
    return [Case(name, jpeg, options, expect=expect, kind="options") for name, options, expect in [
        ("options-not-json", "{not json", "OPTIONS: is not valid JSON"),
        ("options-array", "[1, 2]", "OPTIONS: must be a JSON object"),
        ("options-string", '"PNG"', "OPTIONS: must be a JSON object"),
        ("options-null", "null", "OPTIONS: must be a JSON object"),
        ("options-not-utf8", b"\xff\xfe{}", "OPTIONS: must be UTF-8"),
        ("options-deeply-nested", "[" * 30000 + "]" * 30000, "OPTIONS: is nested too deeply"),
        ("options-too-large", '{"rgba": [1, 2, 3, 4]' + " " * 70000 + "}", "over the limit"),
        ("options-unknown-key", '{"bgColor": "red"}', "bgColor: unknown option"),
        ("options-unknown-key-60kb", '{"' + "k" * 60000 + '": 1}', "OPTIONS: has an unknown key of 60,000"),
        ("options-quality-5", '{"outputQuality": 5}', "outputQuality: must be in 20..99"),
        ("options-quality-string", '{"outputQuality": "high"}', "outputQuality: must be an integer"),
        ("options-rgba-3", '{"rgba": [1, 2, 3]}', "rgba: must be a list of 4"),
        ("options-rgba-negative", '{"rgba": [1, 2, 3, -1]}', "rgba: a must be in 0..255"),
        ("options-threshold-300", '{"alphaMattingForegroundThreshold": 300}',
         "alphaMattingForegroundThreshold: must be in 1..255"),
        ("options-erode-0", '{"alphaMattingErodeSize": 0}', "alphaMattingErodeSize: must be in 1..255"),
        ("options-bool-as-int", '{"returnOnlyMask": 1}', "returnOnlyMask: must be true or false"),
        ("options-format-gif", '{"outputFormat": "GIF"}', "outputFormat: must be one of"),
        ("options-format-60kb-string", '{"outputFormat": "' + "P" * 60000 + '"}', "outputFormat: must be one of"),
        ("options-huge-number", '{"outputQuality": 1e308}', "outputQuality: must be in 20..99"),
        ("options-overflowing-float", '{"outputQuality": 1e999}', "outputQuality: must be an integer"),
        ("options-nan", '{"outputQuality": NaN}', "outputQuality:"),
    ]]


def _huge_integers(jpeg: bytes) -> list[Case]:
    return [Case(name, jpeg, options, expect=expect, kind="huge-integer") for name, options, expect in [
        ("huge-int-quality", f'{{"outputQuality": {HUGE}}}', "outputQuality: must be in 20..99, got an integer of"),
        ("huge-negative-int-erode", f'{{"alphaMattingErodeSize": -{HUGE}}}', "alphaMattingErodeSize: must be in"),
        ("huge-int-rgba", f'{{"rgba": [0, 0, {HUGE}, 255]}}', "rgba: b must be in 0..255"),
        ("huge-int-bool", f'{{"alphaMatting": {HUGE}}}', "alphaMatting: must be true or false"),
        ("huge-int-as-options", HUGE, "OPTIONS: must be a JSON object"),
        ("huge-int-unknown-key", f'{{"x": {HUGE}}}', "x: unknown option"),
        ("huge-float-literal", f'{{"outputQuality": {HUGE}.5}}', "outputQuality: must be an integer"),
    ]]


def _backgrounds(jpeg: bytes) -> list[Case]:
    rgba_bg = np.zeros((4, 4, 4), np.uint8)
    rgba_bg[::2, ::2] = (255, 0, 0, 255)
    return [Case(name, jpeg, "{}", background=bg, expect=expect, kind="background") for name, bg, expect in [
        ("background-not-image", b"not an image at all", "BACKGROUND:"),
        ("background-empty", b"", "BACKGROUND: is empty"),
        ("background-bomb", png_declaring(30000, 30000), "BACKGROUND: declares"),
        ("background-truncated", jpeg[:200], "BACKGROUND:"),
        ("background-ico-bomb", b.ico_holding(b.png_gray(9000, 9000)), "BACKGROUND: is not a recognised image"),
        ("background-3000x1", encoded("PNG", _sample(size=(3000, 1))), "ok"),
        ("background-1x3000", encoded("PNG", _sample(size=(1, 3000))), "ok"),
        ("background-30000x1", b.png_gray(30000, 1), "ok"),
        ("background-1x30000", b.png_gray(1, 30000), "ok"),
        ("background-1x1", encoded("PNG", _sample(size=(1, 1))), "ok"),
        ("background-rgba-checker", encoded("PNG", Image.fromarray(rgba_bg, "RGBA")), "ok"),
        ("background-cmyk-with-profile", encoded("JPEG", _sample("CMYK"), icc_profile=b.swapped_cmyk_profile()),
         "ok"),
        ("background-16bit", encoded("PNG", Image.fromarray(np.full((30, 20), 30000, np.uint16))), "ok"),
    ]]


def _output_sizes() -> list[Case]:
    wide = b.png_gray(16384, 2)
    return [Case(name, data, options, expect=expect, kind="output-size") for name, data, options, expect in [
        ("webp-output-16384-wide", wide, '{"outputFormat": "WEBP"}', "outputFormat: WEBP holds at most 16383"),
        ("webp-mask-16384-wide", wide, '{"outputFormat": "WEBP", "returnOnlyMask": true}', "outputFormat: WEBP"),
        ("png-output-16384-wide", wide, '{"outputFormat": "PNG"}', "ok"),
    ]]


def build() -> list[Case]:
    jpeg = encoded("JPEG")
    return (_malformed() + _declared_size() + _container_bombs() + _pixel_formats() + _icc() + _options(jpeg)
            + _huge_integers(jpeg) + _backgrounds(jpeg) + _output_sizes())


CASES = build()


VALID = Case("valid", b"", kind="valid")  # a marker: the caller's valid image goes in its place


def run_mixed(client, cases: list[Case], valid_image: bytes, workers: int = 6) -> list[tuple[Case, object]]:
    """Send ``cases`` through ``client`` (an RmbgClient), a valid request after every fourth, from
    ``workers`` threads so the dynamic batcher mixes them; (case, result or exception) each."""
    from concurrent.futures import ThreadPoolExecutor

    from rmbg_client import RmbgError

    jobs = [j for i, case in enumerate(cases) for j in ([case] + ([VALID] if i % 4 == 0 else []))]

    def run(case: Case) -> tuple[Case, object]:
        image = valid_image if case is VALID else case.image
        try:
            return case, client.remove(image, case.options, case.background)
        except RmbgError as exc:
            return case, exc

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, jobs))


def mismatches(results: list[tuple[Case, object]]) -> list[str]:
    """Each result that is not what its case expects: success, or an InvalidInputError (INVALID_ARG,
    the client's fault) whose message holds the expected fragment."""
    from rmbg_client import InvalidInputError

    out = []
    for case, result in results:
        if case.expect == "ok":
            if isinstance(result, Exception):
                out.append(f"{case.name}: unexpected error {result!r}"[:300])
        elif not isinstance(result, InvalidInputError) or case.expect not in str(result):
            out.append(f"{case.name}: expected an error with {case.expect!r}, got {result!r}"[:300])
    return out
