"""PIXELS and META as postprocess receives them: checked as untrusted input, since a client can call
``postprocess_<model>`` directly (the served side: tests/integration/test_inner_models_served.py)."""

from __future__ import annotations

import base64
import copy
import io
import json

import numpy as np
import pytest
from PIL import Image

from rmbg_backend import handoff, steps
from rmbg_backend.decode import Limits
from rmbg_backend.errors import RequestError
from rmbg_backend.families import family
from tests.hostile.builders import srgb_profile
from tests.peak_memory import peak_bytes

SPEC = family("isnet").spec(32)
MASK = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(1, 32, 32)


def _prepared(options: bytes = b"{}", size: tuple[int, int] = (40, 30), mode: str = "RGB", icc: bool = False):
    buf = io.BytesIO()
    Image.new(mode, size, (10, 200, 30, 128)[:len(mode)]).save(
        buf, "PNG", **({"icc_profile": srgb_profile()} if icc else {}))
    return steps.preprocess(buf.getvalue(), options, SPEC)


def _wire(meta: dict) -> dict:
    """META as it arrives: through JSON, as the ensemble carries it."""
    return handoff.parse_meta(json.dumps(meta).encode())


def _huge(height: int, width: int, channels: int = 3) -> np.ndarray:
    """A PIXELS array of any size for the price of one pixel (a zero-stride view): only its shape is read."""
    return np.broadcast_to(np.zeros((1, 1, channels), np.uint8), (height, width, channels))


@pytest.mark.parametrize(("options", "mode", "icc"), [
    (b"{}", "RGB", True), (b'{"outputFormat": "WEBP", "rgba": [1, 2, 3, 4]}', "RGBA", False),
    (b'{"crop": true, "cropMargin": "10%", "position": [25, "100%"], "shadow": true, "outputFormat": "auto"}',
     "RGBA", False),
])
def test_what_preprocess_sends_is_received_unchanged(options, mode, icc):
    prepared = _prepared(options, mode=mode, icc=icc)
    received = handoff.receive(prepared.pixels, _wire(prepared.meta), Limits())
    assert received.options == steps.parse_options(options)
    assert (received.image.width, received.image.height) == (40, 30)
    assert np.array_equal(received.image.rgb, prepared.pixels[:, :, :3])
    assert (received.image.alpha is not None) == (mode == "RGBA")
    assert (received.image.icc_profile == srgb_profile()) if icc else received.image.icc_profile is None
    assert set(received.timings) == set(handoff.TIMINGS)


@pytest.mark.parametrize(("height", "width"), [(8000, 8000), (1, 40000), (40000, 1)])
def test_pixels_over_the_limits_are_refused_by_their_shape(height, width):
    prepared = _prepared()
    meta = _wire({**prepared.meta, "width": width, "height": height})
    result, peak = peak_bytes(lambda: steps.postprocess(MASK, _huge(height, width), meta, SPEC))
    assert isinstance(result, RequestError), result
    assert result.field == "PIXELS" and f"{width}x{height}" in result.message
    assert "50,000,000 pixels (and 30,000 per side)" in result.message
    assert peak < 16 * 1024 * 1024  # refused before any pass over the pixels


def test_the_deployments_limits_apply():
    prepared = _prepared()
    with pytest.raises(RequestError, match="PIXELS: declares 40x30 pixels, over the limit of 1,000 pixels"):
        handoff.receive(prepared.pixels, _wire(prepared.meta), Limits(max_pixels=1000))


@pytest.mark.parametrize(("pixels", "fragment"), [
    (np.zeros((30, 40, 2), np.uint8), "got uint8 of shape (30, 40, 2)"),
    (np.zeros((30, 40, 3), np.float32), "got float32"),
    (np.zeros((30, 40), np.uint8), "of shape (30, 40)"),
    (np.zeros((0, 40, 3), np.uint8), "empty size 40x0"),
])
def test_pixels_of_the_wrong_kind_are_refused(pixels, fragment):
    with pytest.raises(RequestError) as info:
        handoff.receive(pixels, _wire(_prepared().meta), Limits())
    assert info.value.field == "PIXELS" and fragment in info.value.message


def _forged(change) -> dict:
    meta = copy.deepcopy(_prepared().meta)
    change(meta)
    return meta


@pytest.mark.parametrize(("change", "field", "fragment"), [
    (lambda m: m.update(width=41), "META", "says 41x30 pixels but PIXELS holds 40x30"),
    (lambda m: m.update(height="30"), "META", "height must be an integer"),
    (lambda m: m.pop("options"), "META", "lacks options"),
    (lambda m: m.update(extra=1), "META", "unknown keys extra"),
    (lambda m: m["options"].update(outputQuality=5000), "outputQuality", "must be in 20..99, got 5000"),
    (lambda m: m["options"].update(bogus=True), "bogus", "unknown option"),
    (lambda m: m["options"].update(alphaMattingErodeSize=10**6), "alphaMattingErodeSize", "1..255"),
    (lambda m: m["options"].update(outputSize=[70000, 10]), "outputSize", "1..65500"),
    (lambda m: m["options"].update(outputSize=[40000, 10]), "outputSize", "30,000"),
    (lambda m: m.update(options=[1]), "META", "options must be a JSON object"),
    (lambda m: m.update(icc="not base64!"), "META", "icc is not valid base64"),
    (lambda m: m.update(icc="A" * (1_398_101 + 8)), "META", "at most 1,048,576 bytes"),
    (lambda m: m.update(timings={"decode_ms": 1}), "META", "timings must be an object with exactly"),
    (lambda m: m["timings"].update(decode_ms="1"), "META", "timings.decode_ms must be a finite number"),
    (lambda m: m.update(preprocess_end=float("nan")), "META", "preprocess_end must be a finite number"),
    (lambda m: m.update(format="x" * 100), "META", "format must be"),
])
def test_a_forged_meta_is_refused_naming_what_is_wrong(change, field, fragment):
    prepared = _prepared()
    with pytest.raises(RequestError) as info:
        steps.postprocess(MASK, prepared.pixels, _wire(_forged(change)), SPEC)
    assert info.value.field == field and fragment in info.value.message, info.value


def test_an_output_the_format_cannot_hold_is_refused_again():
    """preprocess refuses a WEBP over 16383 px; a direct call with such PIXELS is refused the same way."""
    meta = _wire({**_prepared(b'{"outputFormat": "WEBP"}').meta, "width": 20000, "height": 2})
    with pytest.raises(RequestError, match="outputFormat: WEBP holds at most 16383 pixels per side"):
        steps.postprocess(MASK, _huge(2, 20000), meta, SPEC)


@pytest.mark.parametrize(("raw", "fragment"), [
    (b"{not json", "is not valid JSON"),
    (b"\xff\xfe", "is not valid JSON"),
    (b"[1, 2]", "must be a JSON object, got list"),
    (b'{"width": ' + b"9" * 5000 + b"}", "is not valid JSON"),
    (b"[" * 100_000, "is not valid JSON"),
    (b" " * (handoff.MAX_META_BYTES + 1), "over the limit of"),
])
def test_meta_text_that_is_not_a_json_object_is_refused(raw, fragment):
    with pytest.raises(RequestError) as info:
        handoff.parse_meta(raw)
    assert info.value.field == "META" and fragment in info.value.message


def test_an_icc_profile_of_the_largest_size_fits_in_meta():
    meta = {**_prepared().meta, "icc": base64.b64encode(b"\0" * (1 << 20)).decode()}
    assert handoff.parse_meta(json.dumps(meta).encode())["icc"] == meta["icc"]
