"""OPTIONS JSON: the hosted APIs' ``settings`` names, validated strictly.

Unknown keys and out-of-range values are errors (a typo must not silently give a PNG when
the caller asked for a WEBP). The parsed form is a frozen dataclass so every later step
sees one normalised value per option.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

from rmbg_backend.errors import RequestError

OUTPUT_FORMATS = ("PNG", "WEBP", "JPG", "AUTO")
_FORMAT_ALIASES = {"PNG": "PNG", "WEBP": "WEBP", "JPG": "JPG", "JPEG": "JPG", "AUTO": "AUTO"}


@dataclass(frozen=True)
class Options:
    outputFormat: str = "PNG"
    outputQuality: int = 95
    returnOnlyMask: bool = False
    rgba: tuple[int, int, int, int] | None = None
    alphaMatting: bool = False
    alphaMattingForegroundThreshold: int = 240
    alphaMattingBackgroundThreshold: int = 10
    alphaMattingErodeSize: int = 10
    postProcessMask: bool = False
    preserveAlpha: bool = False
    # output shaping (README, "Output shaping"; applied by shape.py between matting and compose)
    crop: bool = False
    cropMargin: int | str = 0  # pixels, or "N%" of the subject box (normalised by _crop_margin)
    outputSize: tuple[int, int] | None = None
    scale: float | None = None
    position: str | tuple[float, float] | None = None  # "center" | "original" | (x%, y%)
    shadow: bool = False
    shadowOpacity: float = 0.5
    shadowBlur: float = 20.0
    shadowOffset: tuple[int, int] = (0, 10)
    refineForeground: bool = False
    roi: tuple[int | str, int | str, int | str, int | str] | None = None  # where the subject may be: px or "N%"
    maxPixels: int | None = None  # the result's pixel cap (remove.bg's size=preview: 250000), downscaled to fit
    # a second engine pass on the subject's crop and an anti-aliased decision (high_quality.py)
    highQuality: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """The OPTIONS tensor's text: only what differs from the defaults, so ``{}`` means all defaults.

        ``parse_options(o.to_json()) == o`` for every valid ``o`` (tests/python_backend/test_options.py).
        """
        default = Options()
        changed = {k: v for k, v in asdict(self).items() if v != getattr(default, k)}
        return json.dumps(changed, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Options:
        """Rebuild options already validated upstream (the step-to-step META hand-off)."""
        data = dict(data)
        for key in ("rgba", "outputSize", "shadowOffset", "roi"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        if isinstance(data.get("position"), list):
            data["position"] = tuple(data["position"])
        return cls(**data)


_INT_RANGES: dict[str, tuple[int, int]] = {
    "outputQuality": (20, 99),
    "alphaMattingForegroundThreshold": (1, 255),
    "alphaMattingBackgroundThreshold": (1, 255),
    "alphaMattingErodeSize": (1, 255),
}
_BOOLS = ("returnOnlyMask", "alphaMatting", "postProcessMask", "preserveAlpha", "crop", "shadow",
          "refineForeground", "highQuality")
# Output shaping: numbers, pairs and the two forms of cropMargin and position (see _shaping_values).
_FLOAT_RANGES: dict[str, tuple[float, float]] = {"shadowOpacity": (0.0, 1.0), "shadowBlur": (0.0, 500.0)}
MAX_CANVAS_SIDE = 65_500  # the largest any output format holds (JPEG); a deployment's Limits are lower
MAX_CROP_MARGIN_PX = 10_000
MAX_SHADOW_OFFSET = 5_000
_SHAPING_KEYS = ("cropMargin", "outputSize", "scale", "position", *_FLOAT_RANGES, "shadowOffset", "roi",
                 "maxPixels")
MAX_PIXELS = 1_000_000_000  # the schema's own bound; a deployment's Limits (max_pixels) are lower
ALLOWED_KEYS = ("outputFormat", "rgba", *_INT_RANGES, *_BOOLS, *_SHAPING_KEYS)
MAX_OPTIONS_BYTES = 64 * 1024


class _LongInteger:
    """An integer literal too long for any option (JSON numbers have no size limit of their own).

    Python refuses to convert integers of more than 4300 digits, and a bare ValueError from
    deep inside json would be reported as a server fault; so the parser keeps such literals
    as this marker and the key's own range check names it.
    """

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))

    def __repr__(self) -> str:
        return f"an integer of {self.digits:,} digits"


_MAX_INT_DIGITS = 20


def _parse_int(text: str) -> int | _LongInteger:
    return _LongInteger(text) if len(text) > _MAX_INT_DIGITS else int(text)


def _shown(value: Any) -> str:
    """A request value quoted in an error, cut short: messages stay small whatever was sent."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_integral(value: Any) -> bool:
    """An int, or a finite float with no fraction; bool (an int subclass) is not a number here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or (math.isfinite(value) and value == int(value))


def _int_in_range(key: str, value: Any) -> int:
    lo, hi = _INT_RANGES[key]
    if isinstance(value, _LongInteger):
        raise RequestError(key, f"must be in {lo}..{hi}, got {value!r}")
    if not _is_integral(value):
        raise RequestError(key, f"must be an integer in {lo}..{hi}, got {_shown(value)}")
    if not lo <= int(value) <= hi:
        raise RequestError(key, f"must be in {lo}..{hi}, got {_shown(value)}")
    return int(value)


def _rgba(value: Any) -> tuple[int, int, int, int]:
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise RequestError(
            "rgba", f"must be a list of 4 integers [r, g, b, a], each 0..255, got {_shown(value)}"
        )
    out = []
    for channel, v in zip("rgba", value, strict=True):
        if isinstance(v, _LongInteger):
            raise RequestError("rgba", f"{channel} must be in 0..255, got {v!r}")
        if not _is_integral(v):
            raise RequestError("rgba", f"{channel} must be an integer 0..255, got {_shown(v)}")
        if not 0 <= int(v) <= 255:
            raise RequestError("rgba", f"{channel} must be in 0..255, got {_shown(v)}")
        out.append(int(v))
    return (out[0], out[1], out[2], out[3])


def parse_options(raw: bytes | str | None) -> Options:
    """Parse and validate the OPTIONS tensor; empty or missing means all defaults."""
    if raw is None:
        return Options()
    if len(raw) > MAX_OPTIONS_BYTES:
        raise RequestError("OPTIONS", f"is {len(raw):,} bytes, over the limit of {MAX_OPTIONS_BYTES:,}")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError("OPTIONS", f"must be UTF-8 JSON text ({exc.reason})") from None
    if not raw.strip():
        return Options()
    try:
        data = json.loads(raw, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise RequestError(
            "OPTIONS", f"is not valid JSON ({exc.msg} at char {exc.pos}); send an object such as {{}}"
        ) from None
    except RecursionError:
        raise RequestError("OPTIONS", "is nested too deeply; send a flat JSON object") from None
    except ValueError as exc:  # anything else json itself refuses: report it, never as a server fault
        raise RequestError("OPTIONS", f"is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        kind = "a long integer" if isinstance(data, _LongInteger) else type(data).__name__
        raise RequestError("OPTIONS", f"must be a JSON object, got {kind}")
    unknown = sorted(set(data) - set(ALLOWED_KEYS))
    if unknown:
        key = unknown[0] if len(unknown[0]) <= 40 else "OPTIONS"
        what = "unknown option" if key != "OPTIONS" else f"has an unknown key of {len(unknown[0]):,} characters"
        raise RequestError(key, f"{what}; allowed keys are {', '.join(ALLOWED_KEYS)}", code="unsupportedParameter")
    values: dict[str, Any] = {}
    if "outputFormat" in data:
        fmt = data["outputFormat"]
        if not isinstance(fmt, str) or fmt.upper() not in _FORMAT_ALIASES:
            raise RequestError(
                "outputFormat", f"must be one of {', '.join(OUTPUT_FORMATS)}, got {_shown(fmt)}"
            )
        values["outputFormat"] = _FORMAT_ALIASES[fmt.upper()]
    for key in _INT_RANGES:
        if key in data:
            values[key] = _int_in_range(key, data[key])
    for key in _BOOLS:
        if key in data:
            if not isinstance(data[key], bool):
                raise RequestError(key, f"must be true or false, got {_shown(data[key])}")
            values[key] = data[key]
    if data.get("rgba") is not None:
        values["rgba"] = _rgba(data["rgba"])
    values.update(_shaping_values(data))
    return Options(**values)


# --- output shaping keys -------------------------------------------------------------------


def _number(key: str, value: Any, lo: float, hi: float, *, open_low: bool = False) -> float:
    """A finite JSON number (not a bool) in lo..hi; ``open_low`` excludes lo itself."""
    shown = f"{lo:g}..{hi:g}" + (f" (above {lo:g})" if open_low else "")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(key, f"must be a number in {shown}, got {value!r}")
    if not (lo < value <= hi if open_low else lo <= value <= hi):
        raise RequestError(key, f"must be in {shown}, got {value!r}")
    return float(value)


def _int_pair(key: str, value: Any, lo: int, hi: int, names: str) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise RequestError(key, f"must be a list of 2 integers [{names}], each {lo}..{hi}, got {value!r}")
    for name, v in zip(names.split(", "), value, strict=True):
        if not _is_integral(v):
            raise RequestError(key, f"{name} must be an integer {lo}..{hi}, got {v!r}")
        if not lo <= int(v) <= hi:
            raise RequestError(key, f"{name} must be in {lo}..{hi}, got {v!r}")
    return int(value[0]), int(value[1])


def _percent(key: str, value: Any) -> float:
    """A percentage given as a number (25) or a string ("25%"), 0..100."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1])
        except ValueError:
            raise RequestError(key, f"must be a percentage 0..100 such as \"25%\", got {value!r}") from None
    return _number(key, value, 0.0, 100.0)


def _crop_margin(value: Any) -> int | str:
    """Pixels (an integer, or "30px") or a share of the subject box ("10%"), normalised to int or "N%"."""
    accepted = f"pixels 0..{MAX_CROP_MARGIN_PX} (30 or \"30px\") or a percentage 0..100 of the subject box (\"10%\")"
    if isinstance(value, str):
        text = value.strip().lower()
        if text.endswith("%"):
            return f"{_percent('cropMargin', text):g}%"
        if text.endswith("px"):
            text = text[:-2].strip()
        if not text.isdigit():
            raise RequestError("cropMargin", f"must be {accepted}, got {value!r}")
        value = int(text)
    if not _is_integral(value) or not 0 <= int(value) <= MAX_CROP_MARGIN_PX:
        raise RequestError("cropMargin", f"must be {accepted}, got {value!r}")
    return int(value)


def _position(value: Any) -> str | tuple[float, float]:
    if isinstance(value, str) and value.lower() in ("center", "centre", "original"):
        return "original" if value.lower() == "original" else "center"
    if isinstance(value, list | tuple) and len(value) == 2:
        return _percent("position", value[0]), _percent("position", value[1])
    raise RequestError(
        "position", f"must be \"center\", \"original\" or [x%, y%] (each 0..100, e.g. [50, 100] or "
        f"[\"50%\", \"100%\"]), got {value!r}"
    )


def _shaping_values(data: dict[str, Any]) -> dict[str, Any]:
    """Validated output-shaping keys of ``data`` (only those present)."""
    values: dict[str, Any] = {}
    if "cropMargin" in data:
        values["cropMargin"] = _crop_margin(data["cropMargin"])
    if data.get("outputSize") is not None:
        values["outputSize"] = _int_pair("outputSize", data["outputSize"], 1, MAX_CANVAS_SIDE, "width, height")
    if data.get("scale") is not None:
        values["scale"] = _number("scale", data["scale"], 0.0, 1.0, open_low=True)
    if data.get("position") is not None:
        values["position"] = _position(data["position"])
    for key, (lo, hi) in _FLOAT_RANGES.items():
        if key in data:
            values[key] = _number(key, data[key], lo, hi)
    if "shadowOffset" in data:
        values["shadowOffset"] = _int_pair("shadowOffset", data["shadowOffset"], -MAX_SHADOW_OFFSET,
                                           MAX_SHADOW_OFFSET, "dx, dy")
    if data.get("roi") is not None:
        values["roi"] = _roi(data["roi"])
    if data.get("maxPixels") is not None:
        value = data["maxPixels"]
        if not _is_integral(value) or not 1 <= int(value) <= MAX_PIXELS:
            raise RequestError("maxPixels", f"must be an integer 1..{MAX_PIXELS}, got {_shown(value)}")
        values["maxPixels"] = int(value)
    return values


def _roi(value: Any) -> tuple[int | str, int | str, int | str, int | str]:
    """[x0, y0, x1, y1], each pixels (an integer) or a share of the image ("50%"), normalised."""
    accepted = "a list of 4 values [x0, y0, x1, y1], each pixels (e.g. 40) or a percentage (e.g. \"50%\")"
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise RequestError("roi", f"must be {accepted}, got {_shown(value)}")
    out: list[int | str] = []
    for v in value:
        if isinstance(v, str) and v.strip().endswith("%"):
            out.append(f"{_percent('roi', v):g}%")
        elif _is_integral(v) and 0 <= int(v) <= MAX_CANVAS_SIDE:
            out.append(int(v))
        else:
            raise RequestError("roi", f"must be {accepted} (pixels 0..{MAX_CANVAS_SIDE}), got {_shown(v)}")
    return out[0], out[1], out[2], out[3]


# Read-only public views of the ranges above: `rmbg remove --help` states them (rmbg_cli.flag_types).
INT_RANGES: Mapping[str, tuple[int, int]] = MappingProxyType(_INT_RANGES)
FLOAT_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(_FLOAT_RANGES)
