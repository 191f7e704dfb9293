"""Clipdrop's remove-background: multipart image_file, the format chosen by Accept, its credit headers."""

from __future__ import annotations

import io

import pytest

from tests.server.gateway.conftest import COST, opened

pytestmark = pytest.mark.triton
PATH = "/remove-background/v1"


@pytest.mark.parametrize(("accept", "fmt", "mode"), [(None, "PNG", "RGBA"), ("image/webp", "WEBP", "RGBA"),
                                                     ("image/jpeg", "JPEG", "RGB"), ("*/*", "PNG", "RGBA")])
def test_accept_picks_the_format(gateway, small_jpeg, accept, fmt, mode):
    headers = {"x-api-key": "k", **({"Accept": accept} if accept else {})}
    r = gateway.request("POST", PATH, files={"image_file": ("x.jpg", small_jpeg, "image/jpeg")}, headers=headers)
    assert r.status_code == 200, r.text
    out = opened(r.content)
    assert (out.format, out.mode, out.size) == (fmt, mode, opened(small_jpeg).size)
    assert float(r.headers["x-credits-consumed"]) == COST and "x-remaining-credits" not in r.headers


def test_an_input_with_transparency_keeps_it_unless_told_to_discard_it(gateway, small_jpeg):
    rgba = opened(small_jpeg).convert("RGBA")
    rgba.putalpha(0)  # fully transparent: return_input_if_non_opaque keeps that
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    kept = opened(gateway.request("POST", PATH, files={"image_file": ("x.png", buf.getvalue())}).content)
    discarded = opened(gateway.request("POST", PATH, files={"image_file": ("x.png", buf.getvalue())},
                                       data={"transparency_handling": "discard_alpha_layer"}).content)
    assert kept.getchannel("A").getextrema() == (0, 0) and discarded.getchannel("A").getextrema()[1] == 255


@pytest.mark.parametrize(("files", "data", "headers", "status"), [
    (None, {}, {}, 400), ({"image_file": ("x.jpg", b"not an image")}, {}, {}, 400),
    ({"image_file": ("x.jpg", b"x")}, {"transparency_handling": "keep"}, {}, 400),
    ({"image_file": ("x.jpg", b"x")}, {}, {"Accept": "image/gif"}, 406),
])
def test_errors_are_clipdrops_shape(gateway, files, data, headers, status):
    r = gateway.request("POST", PATH, files=files, data=data, headers=headers)
    assert r.status_code == status and set(r.json()) == {"error"} and r.json()["error"]
