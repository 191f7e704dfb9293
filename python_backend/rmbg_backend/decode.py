"""Decode an allowlisted image format into sRGB + optional alpha, bounded in pixels and frames.

Bombs are refused at three depths:
  * before Pillow sees the data: the byte size, and for WebP (whose decoder allocates its
    canvas and demuxes every frame while opening) the declared canvas and frame count;
  * inside Pillow: only the allowlisted plugins are tried (ICO, ICNS and other containers
    decode embedded images while opening), and Pillow's own pixel limit is set to ours and
    made an error, so a frame or embedded image over it stops the plugin that meets it;
  * after opening, before decoding: the declared size, side and frame count.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from rmbg_backend.colour import MAX_ICC_BYTES, profile_for_mode, to_rgb
from rmbg_backend.errors import RequestError

try:  # HEIF/HEIC through the maintained plugin, when installed
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - optional plugin
    pass

# Pillow format ids we decode; "JPEG" also yields MPO (multi-picture JPEG), of which we use the
# first picture. Everything else, containers included, is refused before any plugin runs.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "AVIF", "HEIF")
ACCEPTED = ("JPEG (and MPO), PNG (APNG: first frame), WebP, GIF (first frame), TIFF (first page), "
            "BMP, AVIF, HEIF/HEIC")
# Formats people send by mistake, named in the error so the caller knows what to convert.
_KNOWN_REFUSED = (
    (b"\x00\x00\x01\x00", "an ICO icon"), (b"\x00\x00\x02\x00", "a CUR cursor"), (b"icns", "an ICNS icon"),
    (b"8BPS", "a Photoshop PSD"), (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000"), (b"\xffO\xffQ", "a JPEG 2000"),
    (b"%PDF", "a PDF document"), (b"%!PS", "a PostScript file"), (b"DDS ", "a DDS texture"),
    (b"qoif", "a QOI image"), (b"PK\x03\x04", "a ZIP archive"), (b"\x7fELF", "an executable"),
)
# A PNG's text chunks (we use none) may inflate to 64 MB in Pillow's default; 4 MB is ample.
PngImagePlugin.MAX_TEXT_MEMORY = 4 * PngImagePlugin.MAX_TEXT_CHUNK


@dataclass(frozen=True)
class Limits:
    """Safe defaults: 50 MB encoded in, 50 megapixels decoded (about 200 MB as RGBA), 200 MB out.

    ``max_frames`` bounds animated and multi-page inputs (only their first frame is used, but
    some decoders index every frame while opening). Set per deployment through the ``limits``
    parameter of the pre/post models' config.
    """

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_side: int = 30_000
    max_output_bytes: int = 200 * 1024 * 1024
    max_frames: int = 1000


# Pillow's bomb check runs inside plugins (GIF frames larger than the screen, WebP canvases,
# embedded images); with our limit as its threshold and its warning made an error it is a
# second, deeper guard. decode_image re-applies it in case a deployment's Limits differ.
Image.MAX_IMAGE_PIXELS = Limits().max_pixels


@dataclass
class DecodedImage:
    rgb: np.ndarray  # H x W x 3 uint8 sRGB (or in ``icc_profile``'s RGB space), C-contiguous
    alpha: np.ndarray | None  # H x W uint8, or None when the input has no alpha channel
    format: str
    icc_profile: bytes | None = None  # an RGB profile describing ``rgb``; never any other kind

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


_BYTES_REPR = re.compile(r"""b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*"|(?:\\x[0-9a-fA-F]{2}){2,}""")


def _reason(exc: BaseException) -> str:
    """Pillow's message without any quoted input bytes (an error must never echo what it was sent)."""
    return _BYTES_REPR.sub("<bytes>", str(exc))[:200] or type(exc).__name__


def _over_limit(field: str, what: str, limits: Limits) -> RequestError:
    return RequestError(
        field, f"{what}, over the limit of {limits.max_pixels:,} pixels (and {limits.max_side:,} per side)"
    )


def check_size(field: str, width: int, height: int, limits: Limits) -> None:
    """The pixel limits, for a header's declared size and for PIXELS handed to postprocess alike."""
    if width < 1 or height < 1:
        raise RequestError(field, f"has an empty size {width}x{height}")
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise _over_limit(field, f"declares {width}x{height} pixels", limits)


def _frames_over(field: str, limits: Limits, declared: int | None = None) -> RequestError:
    """``declared``: the count the header states; None when counting stopped past the limit."""
    what = f"declares {declared:,} frames" if declared is not None else f"has more than {limits.max_frames:,} frames"
    return RequestError(field, f"{what}, over the limit of {limits.max_frames:,}; send a still image or one frame")


def _check_webp_header(data: bytes, field: str, limits: Limits) -> None:
    """Canvas size and frame count from the RIFF chunks, before libwebp allocates or demuxes.

    Walks chunk headers only, and stops at the first frame over the limit.
    """
    pos, frames = 12, 0
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = data[pos + 8:pos + 8 + min(size, 30)]
        if kind == b"VP8X" and len(body) >= 10:
            check_size(field, 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little"),
                        limits)
        elif kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
            bits = int.from_bytes(body[1:5], "little")
            check_size(field, (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, limits)
        elif kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
            check_size(field, int.from_bytes(body[6:8], "little") & 0x3FFF,
                        int.from_bytes(body[8:10], "little") & 0x3FFF, limits)
        elif kind == b"ANMF":
            frames += 1
            if frames > limits.max_frames:
                raise _frames_over(field, limits)
        pos += 8 + size + (size & 1)


def _count_frames(im: Image.Image, limit: int) -> int:
    """Frames in ``im``, counting at most ``limit + 1``.

    APNG, WebP, MPO, AVIF and HEIF declare their count in a header Pillow has read; GIF and
    TIFF only reveal it by walking the file, which we bound instead of letting ``n_frames``
    walk all of it. The walk skips pixel data (GIF) or reads directory entries only (TIFF).
    """
    if im.format not in ("GIF", "TIFF"):
        return int(getattr(im, "n_frames", 1))
    count = 1
    try:
        while count <= limit:
            if im.format == "GIF":
                im._seek(count, False)  # noqa: SLF001 - Pillow's own n_frames walks the same way
            else:
                im._seek(count)  # noqa: SLF001
            count += 1
    except Exception:  # noqa: BLE001 - EOFError ends the walk; a damaged later frame leaves the first usable
        pass
    im.seek(0)
    return count


def _sniff(data: bytes, field: str) -> RequestError:
    name = next((label for magic, label in _KNOWN_REFUSED if data.startswith(magic)), None)
    what = f"it looks like {name}, which is not accepted; " if name else ""
    return RequestError(field, f"is not a recognised image ({len(data):,} bytes; {what}accepted: {ACCEPTED})")


def _declared_range(im: Image.Image) -> tuple[float, float, bool]:
    """(black, white, inverted) of a 16/32-bit integer or float image, from what the file declares.

    16-bit PNG and TIFF: 0..65535. TIFF 32-bit: the sample format's range (signed: negatives
    are black). Float: TIFF's SMinSampleValue/SMaxSampleValue when given, else 0..1.
    WhiteIsZero TIFFs (photometric 0) are inverted. Never derived from the pixel values.
    """
    tags = getattr(im, "tag_v2", None) or {}

    def tag(code: int, default: float) -> float:
        value = tags.get(code, default)
        return float(value[0] if isinstance(value, tuple | list) and value else value)

    inverted = tag(262, 1) == 0
    if im.mode == "F":
        lo, hi = tag(340, 0.0), tag(341, 1.0)
        return (lo, hi, inverted) if np.isfinite(lo) and np.isfinite(hi) and hi > lo else (0.0, 1.0, inverted)
    if im.mode.startswith("I;16") or not tags:
        return 0.0, 65535.0, inverted
    bits = int(tag(258, 32))
    signed = tag(339, 1) == 2
    return 0.0, float(2 ** (bits - 1 if signed else bits) - 1), inverted


def _to_8bit(im: Image.Image) -> Image.Image:
    """16/32-bit integer and float grayscale as 8-bit L, scaled by the declared range."""
    lo, hi, inverted = _declared_range(im)
    arr = np.asarray(im)
    tags = getattr(im, "tag_v2", None) or {}
    if arr.dtype == np.int32 and tags.get(339, (1,))[0] == 1 and tags.get(258, (0,))[0] == 32:
        arr = arr.view(np.uint32)  # Pillow keeps unsigned 32-bit samples in a signed mode
    out = np.empty(arr.shape, np.float32)
    np.subtract(arr, lo, out=out, casting="unsafe")
    np.nan_to_num(out, copy=False, nan=0.0)
    out *= np.float32(255.0 / (hi - lo))
    if inverted:
        np.subtract(np.float32(255.0), out, out=out)
    np.clip(out, 0, 255, out=out)
    out += 0.5
    return Image.fromarray(out.astype(np.uint8), "L")


_ALPHA_MODES = ("RGBA", "LA", "La", "PA", "RGBa")


def _split(im: Image.Image) -> tuple[Image.Image | np.ndarray, np.ndarray | None]:
    """(colour channels, alpha as uint8 or None); premultiplied modes are un-premultiplied.

    RGB-family colour with alpha comes back as an H x W x 3 array already (no second image).
    """
    if im.mode in ("LA", "La"):
        im = im.convert("LA") if im.mode == "La" else im
        return im.getchannel("L"), np.asarray(im.getchannel("A"))
    if im.mode in _ALPHA_MODES or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = np.asarray(im if im.mode == "RGBA" else im.convert("RGBA"))
        return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3])
    return im, None


def _pixels(im: Image.Image, icc: bytes | None) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _to_8bit(im)
    colour, alpha = _split(im)
    if isinstance(colour, np.ndarray):
        return colour, alpha, profile_for_mode(icc, im.mode)
    rgb, profile = to_rgb(colour, icc)
    return np.asarray(rgb), alpha, profile


def decode_image(data: bytes, *, field: str = "IMAGE", limits: Limits = Limits()) -> DecodedImage:
    """Decode ``data``; every failure is a RequestError naming ``field`` and what is accepted."""
    if not data:
        raise RequestError(field, f"is empty (0 bytes); send an encoded image ({ACCEPTED})")
    if len(data) > limits.max_bytes:
        raise RequestError(field, f"is {len(data):,} bytes, over the limit of {limits.max_bytes:,} bytes")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        _check_webp_header(data, field, limits)
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    fmt = "image"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd but readable files
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            fmt = im.format or "image"
            check_size(field, *im.size, limits)
            frames = _count_frames(im, limits.max_frames)
            if frames > limits.max_frames:
                raise _frames_over(field, limits, None if im.format in ("GIF", "TIFF") else frames)
            im.load()
            check_size(field, *im.size, limits)  # GIF grows to frames larger than its screen
            ImageOps.exif_transpose(im, in_place=True)  # in place: no second full-size copy
            icc = im.info.get("icc_profile")
            rgb, alpha, icc = _pixels(im, icc if isinstance(icc, bytes) and len(icc) <= MAX_ICC_BYTES else None)
        except RequestError:
            raise
        except UnidentifiedImageError:
            raise _sniff(data, field) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            what = f"declares {int(found[1]):,} pixels" if found else "holds a frame over the pixel limit"
            raise _over_limit(field, what + ("" if fmt == "image" else f" in a {fmt} frame"), limits) from None
        except MemoryError:
            raise RequestError(field, f"needs more memory to decode than this server has ({fmt})") from None
        except Exception as exc:  # noqa: BLE001 - truncated/corrupt data raises OSError, SyntaxError...
            raise RequestError(field, f"is truncated or corrupt ({fmt}): {_reason(exc)}") from None
    return DecodedImage(np.ascontiguousarray(rgb), alpha, fmt, icc)
