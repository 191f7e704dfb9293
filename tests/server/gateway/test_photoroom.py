"""Photoroom's v1/segment and the background-removal and framing subset of v2/edit, as its docs send them."""

from __future__ import annotations

import numpy as np
import pytest

from tests.server.gateway.conftest import opened

pytestmark = pytest.mark.triton


def test_segment_as_documented(gateway, person_photo):
    data, size = person_photo
    r = gateway.request("POST", "/v1/segment", files={"image_file": ("p.jpg", data, "image/jpeg")},
                        headers={"x-api-key": "k"})
    assert r.status_code == 200, r.text
    out = opened(r.content)
    assert (out.format, out.mode, out.size) == ("PNG", "RGBA", size)  # size full is the default
    jpg = opened(gateway.request("POST", "/v1/segment", files={"image_file": ("p.jpg", data)},
                                 data={"format": "jpg", "bg_color": "FF0000", "size": "preview"}).content)
    assert jpg.format == "JPEG" and jpg.width * jpg.height <= 250_000
    assert abs(np.asarray(jpg)[2, 2].astype(int) - [255, 0, 0]).max() <= 12
    mask = opened(gateway.request("POST", "/v1/segment", files={"image_file": ("p.jpg", data)},
                                  data={"channels": "alpha", "crop": "true"}).content)
    assert mask.mode == "L" and mask.width < size[0]


def test_v2_edit_frames_the_subject_on_a_canvas(gateway, person_photo, images, http_server):
    data, _ = person_photo
    r = gateway.request("POST", "/v2/edit", files={"imageFile": ("p.jpg", data)},
                        data={"outputSize": "500x500", "padding": "0.1", "background.color": "FFFFFF",
                              "export.format": "jpeg", "shadow.mode": "ai.soft"})
    assert r.status_code == 200, r.text
    out = opened(r.content)
    assert (out.format, out.size) == ("JPEG", (500, 500))
    pixels = np.asarray(out).astype(int)
    assert pixels[:20].min() >= 230 and pixels[-15:].min() >= 200  # the padding is white (the shadow is soft)
    by_url = gateway.get("/v2/edit", params={"imageUrl": f"{http_server.base}/source_image.jpg",
                                             "outputSize": "croppedSubject"})
    assert by_url.status_code == 200 and opened(by_url.content).mode == "RGBA"


@pytest.mark.parametrize(("path", "form", "parameter"), [
    ("/v2/edit", {"background.prompt": "a beach"}, "background.prompt"),
    ("/v2/edit", {"lighting.mode": "ai.auto"}, "lighting.mode"),
    ("/v2/edit", {"removeBackground": "false"}, "removeBackground"),
    ("/v2/edit", {"padding": "0.7"}, "padding"),
    ("/v1/segment", {"size": "8k"}, "size"),
    ("/v1/segment", {"channels": "rgb"}, "channels"),
])
def test_what_cannot_be_honoured_is_a_400_naming_it(gateway, person_photo, path, form, parameter):
    name = "imageFile" if path == "/v2/edit" else "image_file"
    r = gateway.request("POST", path, files={name: ("p.jpg", person_photo[0])}, data=form)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["detail"].startswith(f"{parameter}: ") and error["status_code"] == 400 and error["type"]
