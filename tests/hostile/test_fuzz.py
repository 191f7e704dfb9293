"""Property-based fuzzing: the parser and the decoder either succeed or raise RequestError."""

from __future__ import annotations

import io
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rmbg_backend.decode import Limits, decode_image
from rmbg_backend.errors import RequestError
from rmbg_backend.options import ALLOWED_KEYS, Options, parse_options

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-(10**80), 10**80)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
option_dicts = st.dictionaries(st.sampled_from(ALLOWED_KEYS) | st.text(max_size=12), json_values, max_size=6)


@settings(max_examples=400, deadline=None)
@given(option_dicts)
def test_options_parser_accepts_or_names_the_key(options):
    raw = json.dumps(options)
    try:
        parsed = parse_options(raw.encode())
    except RequestError as exc:
        assert exc.field in (*options.keys(), "OPTIONS")
        return
    assert isinstance(parsed, Options)
    assert 20 <= parsed.outputQuality <= 99 and parsed.outputFormat in ("PNG", "WEBP", "JPG")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ALLOWED_KEYS) | st.text(max_size=12), st.booleans(),
       st.text(alphabet="0123456789", min_size=1, max_size=9000), st.sampled_from(["{}", "[{}]", "[1, {}, 3, 4]"]))
def test_integer_literals_of_any_length(key, negative, digits, shape):
    """Integer literals too long for Python's int() (4300 digits) must still be request errors."""
    number = ("-" if negative else "") + digits
    raw = "{" + json.dumps(key) + ": " + shape.replace("{}", number) + "}"
    try:
        parsed = parse_options(raw.encode())
    except RequestError as exc:
        assert exc.field in (key, "OPTIONS") and len(str(exc)) < 400
        return
    assert isinstance(parsed, Options)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_options_parser_on_raw_bytes(raw):
    try:
        assert isinstance(parse_options(raw), Options)
    except RequestError:
        pass


def _valid(fmt: str) -> bytes:
    rng = np.random.default_rng(3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


VALID = {fmt: _valid(fmt) for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")}
LIMITS = Limits(max_pixels=4_000_000)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
       st.integers(0, 10**6))
def test_decoder_on_mutated_images(fmt, flips, cut):
    data = bytearray(VALID[fmt])
    for pos, value in flips:
        data[pos % len(data)] = value
    data = bytes(data[: max(1, cut % (len(data) + 1))])
    try:
        out = decode_image(data, limits=LIMITS)
    except RequestError as exc:
        assert exc.field == "IMAGE"
        return
    assert out.rgb.ndim == 3 and out.rgb.shape[2] == 3 and out.rgb.dtype == np.uint8
    assert out.width * out.height <= LIMITS.max_pixels


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_decoder_on_random_bytes(data):
    try:
        decode_image(data, limits=LIMITS)
    except RequestError:
        pass


valid_options = st.fixed_dictionaries({}, optional={
    "outputFormat": st.sampled_from(["PNG", "WEBP", "JPG", "jpeg"]),
    "outputQuality": st.integers(20, 99),
    "returnOnlyMask": st.booleans(),
    "rgba": st.lists(st.integers(0, 255), min_size=4, max_size=4),
    "alphaMatting": st.booleans(),
    "alphaMattingForegroundThreshold": st.integers(1, 255),
    "alphaMattingBackgroundThreshold": st.integers(1, 255),
    "alphaMattingErodeSize": st.integers(1, 255),
    "postProcessMask": st.booleans(),
    "preserveAlpha": st.booleans(),
})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_options, st.integers(1, 40), st.integers(1, 40), st.sampled_from(["RGB", "RGBA", "L", "LA", "P"]),
       st.sampled_from(["random", "zeros", "ones", "binary"]), st.booleans(), st.integers(0, 2**32 - 1))
def test_valid_requests_never_fail(options, width, height, mode, mask_kind, with_background, seed):
    """Any valid OPTIONS on any small image, whatever the prediction: a result, never an error
    (an exception here would reach the client as INTERNAL)."""
    from rmbg_backend import steps
    from rmbg_backend.families import family

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA").convert(mode).save(buf, "PNG")
    mask = {"random": rng.random((1, 32, 32)), "zeros": np.zeros((1, 32, 32)), "ones": np.ones((1, 32, 32)),
            "binary": rng.random((1, 32, 32)) > 0.5}[mask_kind].astype(np.float32)
    spec = family("isnet").spec(32)
    prepared = steps.preprocess(buf.getvalue(), json.dumps(options).encode(), spec)
    data, info = steps.postprocess(mask, prepared.pixels, prepared.meta, spec,
                                   buf.getvalue() if with_background else None)
    assert (info["width"], info["height"]) == (width, height) and data
