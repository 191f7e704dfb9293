"""What preprocess hands to postprocess: PIXELS (the decoded image) and META (JSON), and the checks on them.

Inside the ensemble preprocess writes both; but Triton serves every model of the repository to any
client that reaches its port (2.51 restricts API categories, such as model loading, never single
models), so ``postprocess_<model>`` can be called directly with PIXELS and META of the caller's
choosing. Postprocess therefore treats them as input like any other: the pixel limits, the OPTIONS
validation and the output-format checks of preprocess all run again (README, "Limits and security").
The checks read shapes and a small JSON text only, so a refusal costs no pass over the pixels.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rmbg_backend import contract as c
from rmbg_backend.colour import MAX_ICC_BYTES
from rmbg_backend.decode import DecodedImage, Limits, check_size
from rmbg_backend.encode import check_output_size
from rmbg_backend.errors import RequestError
from rmbg_backend.options import MAX_OPTIONS_BYTES, Options, options_from_mapping
from rmbg_backend.shape import capped_size
from rmbg_backend.shape import check_options as check_shaping

# An ICC profile (base64) and the normalised options are the only sizeable parts of a META.
MAX_META_BYTES = MAX_ICC_BYTES * 4 // 3 + MAX_OPTIONS_BYTES
TIMINGS = ("decode_ms", "preprocess_ms")
_KEYS = ("width", "height", "format", "options", "icc", "timings", "preprocess_end")
_CHANNELS = (3, 4)  # RGB, or RGBA with the input's alpha


@dataclass
class Received:
    """A checked hand-off: the image, its options and preprocess's timings."""

    image: DecodedImage
    options: Options
    timings: dict[str, float]
    preprocess_end: float  # time.time() when preprocess finished


def check_request(options: Options, width: int, height: int, limits: Limits) -> None:
    """Everything about the result's size a request can be refused for, before any work on the pixels."""
    check_shaping(options, limits)
    # the result's size, as far as it is known before the model runs (a crop only shrinks it)
    out_w, out_h = capped_size(*(options.outputSize or (width, height)), options.maxPixels)
    check_output_size(options.outputFormat, out_w, out_h)


def meta(image: DecodedImage, options: Options, timings: dict[str, float], preprocess_end: float
         ) -> dict[str, Any]:
    """The META preprocess sends; ``receive`` is its inverse."""
    return {
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "options": options.to_dict(),
        "icc": base64.b64encode(image.icc_profile).decode() if image.icc_profile else None,
        "timings": timings,
        "preprocess_end": preprocess_end,
    }


def parse_meta(raw: bytes) -> dict[str, Any]:
    """The META tensor's JSON text -> a dict; an oversized or malformed one names META."""
    if len(raw) > MAX_META_BYTES:
        raise RequestError(c.META, f"is {len(raw):,} bytes, over the limit of {MAX_META_BYTES:,}")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, integers over Python's digit limit
        raise RequestError(c.META, "is not valid JSON; it is written by preprocess_<model>") from None
    if not isinstance(data, dict):
        raise RequestError(c.META, f"must be a JSON object, got {type(data).__name__}")
    return data


def _integer(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(c.META, f"{key} must be an integer, got {type(value).__name__}")
    return value


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(c.META, f"{key} must be a finite number")
    return float(value)


def _icc(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_ICC_BYTES * 4 // 3 + 4:
        raise RequestError(c.META, f"icc must be null or the base64 of a profile of at most {MAX_ICC_BYTES:,} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(c.META, "icc is not valid base64") from None


def _timings(value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or set(value) != set(TIMINGS):
        raise RequestError(c.META, f"timings must be an object with exactly {', '.join(TIMINGS)}")
    return {key: _number(f"timings.{key}", value[key]) for key in TIMINGS}


def check_pixels(pixels: np.ndarray, limits: Limits) -> tuple[int, int]:
    """(width, height) of a PIXELS array within the limits: H x W x 3 or 4, uint8."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in _CHANNELS:
        raise RequestError(c.PIXELS, f"must be a uint8 array of height x width x 3 (RGB) or 4 (RGBA), got "
                                     f"{pixels.dtype} of shape {tuple(pixels.shape)}")
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    check_size(c.PIXELS, width, height, limits)
    return width, height


def receive(pixels: np.ndarray, data: dict[str, Any], limits: Limits) -> Received:
    """PIXELS and a parsed META, checked as untrusted input (see the module docstring)."""
    width, height = check_pixels(pixels, limits)
    missing = [key for key in _KEYS if key not in data]
    unknown = sorted(set(data) - set(_KEYS))
    if missing or unknown:
        shown = ", ".join(k[:40] for k in unknown[:5])  # a key is quoted cut short, as option values are
        what = f"lacks {', '.join(missing)}" if missing else f"has unknown keys {shown}"
        raise RequestError(c.META, f"{what}; it holds exactly {', '.join(_KEYS)}")
    if (_integer("width", data["width"]), _integer("height", data["height"])) != (width, height):
        raise RequestError(c.META, f"says {data['width']}x{data['height']} pixels but PIXELS holds {width}x{height}")
    if not isinstance(data["format"], str) or len(data["format"]) > 16:
        raise RequestError(c.META, "format must be the input's format name (such as JPEG), at most 16 characters")
    if not isinstance(data["options"], dict):
        raise RequestError(c.META, f"options must be a JSON object, got {type(data['options']).__name__}")
    options = options_from_mapping(data["options"])  # errors name the option, as for OPTIONS
    check_request(options, width, height, limits)
    icc = _icc(data["icc"])
    timings = _timings(data["timings"])
    preprocess_end = _number("preprocess_end", data["preprocess_end"])
    alpha = np.ascontiguousarray(pixels[:, :, 3]) if pixels.shape[2] == 4 else None
    image = DecodedImage(np.ascontiguousarray(pixels[:, :, :3]), alpha, data["format"], icc)
    return Received(image, options, timings, preprocess_end)
