"""remove.bg's API, as its documentation and its client libraries send it, against a real gateway and Triton.

The maintained clients (npm ``remove.bg`` 1.3.0, PyPI ``removebg`` 0.04 and ``remove-bg`` 0.2.1) all
hard-code ``https://api.remove.bg``: none can be pointed elsewhere, so these tests send exactly what
they send (npm's JSON body with ``Accept: application/json``; multipart with ``image_file``).
"""

from __future__ import annotations

import base64
import io
import zipfile

import numpy as np
import pytest

from tests.server.gateway.conftest import API_KEY, COST, opened

pytestmark = pytest.mark.triton
PATH = "/v1.0/removebg"


def test_the_documented_multipart_request_answers_the_image_with_removebg_headers(gateway, person_photo):
    data, size = person_photo
    r = gateway.request("POST", PATH, files={"image_file": ("p.jpg", data, "image/jpeg")}, data={"size": "auto"},
                        headers={"X-Api-Key": "any key without keys"})
    assert r.status_code == 200, r.text
    out = opened(r.content)
    assert (out.format, out.mode, out.size) == ("PNG", "RGBA", size)  # auto: full size, PNG when transparent
    assert (r.headers["x-width"], r.headers["x-height"]) == (str(size[0]), str(size[1]))
    assert r.headers["x-type"] == "other" and float(r.headers["x-credits-charged"]) == COST
    alpha = np.asarray(out.getchannel("A"))
    rows, cols = np.nonzero(alpha >= 32)
    assert int(r.headers["x-foreground-top"]) == rows.min() and int(r.headers["x-foreground-left"]) == cols.min()
    assert int(r.headers["x-foreground-width"]) == cols.max() - cols.min() + 1


def test_size_preview_is_the_default_and_caps_the_pixels(gateway, person_photo):
    data, (w, h) = person_photo
    out = opened(gateway.request("POST", PATH, files={"image_file": ("p.jpg", data)}).content)
    assert out.width * out.height <= 250_000 and abs(out.width / out.height - w / h) < 0.01
    medium = opened(gateway.request("POST", PATH, files={"image_file": ("p.jpg", data)},
                                    data={"size": "medium"}).content)
    assert medium.size == (w, h)  # 0.27 MP is under medium's 1.5 MP


def test_the_npm_clients_json_body_with_a_url(gateway, images, http_server):
    """npm remove.bg's removeBackgroundFromImageUrl: JSON, Accept: application/json, result_b64 back."""
    url = f"{http_server.base}/source_image.jpg"
    body = {"size": "regular", "type": "product", "crop": False, "bg_color": "green", "image_url": url,
            "format": "jpg"}
    r = gateway.post(PATH, body, headers={"X-Api-Key": "k", "Accept": "application/json"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    out = opened(base64.b64decode(data["result_b64"]))
    assert out.format == "JPEG" and out.mode == "RGB" and r.headers["x-type"] == "product"
    assert {"foreground_top", "foreground_left", "foreground_width", "foreground_height"} <= set(data)
    corner = np.asarray(out)[2, 2].astype(int)
    assert abs(corner - np.array([0, 128, 0])).max() <= 12  # CSS green behind the subject


def test_base64_input_zip_alpha_channels_roi_crop_and_hard_edges(gateway, person_photo):
    data, (w, h) = person_photo
    b64 = base64.b64encode(data).decode()
    zipped = gateway.request("POST", PATH, data={"image_file_b64": b64, "format": "zip", "size": "full"})
    archive = zipfile.ZipFile(io.BytesIO(zipped.content))
    assert zipped.headers["content-type"] == "application/zip" and sorted(archive.namelist()) == ["alpha.png",
                                                                                                  "color.jpg"]
    colour, matte = opened(archive.read("color.jpg")), opened(archive.read("alpha.png"))
    assert (colour.mode, matte.mode, colour.size, matte.size) == ("RGB", "L", (w, h), (w, h))

    mask = opened(gateway.request("POST", PATH, data={"image_file_b64": b64, "channels": "alpha",
                                                      "size": "full"}).content)
    assert mask.mode == "L" and mask.size == (w, h)
    roi = np.asarray(opened(gateway.request("POST", PATH, data={
        "image_file_b64": b64, "channels": "alpha", "size": "full", "roi": "0% 0% 50% 100%"}).content))
    assert roi[:, w // 2 + 1:].max() == 0 and roi[:, : w // 2].max() > 200
    hard = np.asarray(opened(gateway.request("POST", PATH, data={
        "image_file_b64": b64, "channels": "alpha", "size": "full", "semitransparency": "false"}).content))
    assert set(np.unique(hard)) <= {0, 255}
    cropped = opened(gateway.request("POST", PATH, data={"image_file_b64": b64, "crop": "true",
                                                         "crop_margin": "10px", "size": "full"}).content)
    assert cropped.width < w and cropped.height <= h


@pytest.mark.parametrize(("form", "status", "parameter"), [
    ({}, 400, "image_file"),
    ({"image_url": "http://10.0.0.1/x.jpg"}, 400, "image_url"),
    ({"size": "huge"}, 400, "size"),
    ({"shadow_type": "car"}, 400, "shadow_type"),
    ({"bg_color": "not-a-colour"}, 400, "bg_color"),
    ({"scale": "150%"}, 400, "scale"),
    ({"semitransparency": "maybe"}, 400, "semitransparency"),
    ({"sparkles": "true"}, 400, "sparkles"),
])
def test_refusals_in_removebgs_error_shape(gateway, person_photo, form, status, parameter):
    data, _ = person_photo
    files = {"image_file": ("p.jpg", data)} if parameter != "image_file" and "image_url" not in form else None
    r = gateway.request("POST", PATH, files=files, data=form)
    assert r.status_code == status, r.text
    (error,) = r.json()["errors"]
    assert set(error) == {"title", "code", "detail"} and error["detail"].startswith(f"{parameter}: ")


def test_a_bad_key_is_403_and_the_account_answers(gateway_factory, person_photo):
    keyed = gateway_factory("--api-key", API_KEY, "--credit-balance", "12.5")
    refused = keyed.request("POST", PATH, files={"image_file": ("p.jpg", person_photo[0])},
                            headers={"X-Api-Key": "wrong-key-000000000000000"})
    assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "invalidApiKey"
    ok = keyed.request("POST", PATH, files={"image_file": ("p.jpg", person_photo[0])}, headers={"X-Api-Key": API_KEY})
    assert ok.status_code == 200 and opened(ok.content).mode == "RGBA"
    account = keyed.get("/v1.0/account", headers={"X-Api-Key": API_KEY}).json()
    assert account["data"]["attributes"]["credits"]["total"] == 12.5
