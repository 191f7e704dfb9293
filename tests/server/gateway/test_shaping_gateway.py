"""Output shaping (README, "Output shaping") through the gateway's ``settings`` pass-through, over real HTTP."""

from __future__ import annotations

import base64
import io
import uuid

import numpy as np
import pytest
from PIL import Image

from rmbg_backend.shape import subject_box

pytestmark = pytest.mark.triton


def task(image: str, **fields) -> dict:
    return {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "model": "isnet",
            "inputs": {"image": image}, "outputType": "dataURI", **fields}


def result_image(response) -> tuple[Image.Image, str]:
    assert response.status_code == 200, response.text
    uri = response.json()["data"][0]["imageDataURI"]
    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    im.load()
    return im, uri.split(";", 1)[0]


@pytest.fixture(scope="module")
def photo_uri(pairs) -> str:
    data = next(p for p in pairs if p.id == "ecssd_0049").image.read_bytes()
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def test_every_shaping_key_through_settings(gateway, photo_uri):
    settings = {"crop": True, "cropMargin": "5%", "outputSize": [320, 240], "scale": 0.75, "position": [50, 100],
                "shadow": True, "shadowOpacity": 0.4, "shadowBlur": 12, "shadowOffset": [6, 0],
                "refineForeground": True}
    im, content_type = result_image(gateway.post("/v1", [task(photo_uri, outputFormat="AUTO", settings=settings)]))
    assert (im.format, im.mode, im.size, content_type) == ("PNG", "RGBA", (320, 240), "data:image/png")
    alpha = np.asarray(im)[:, :, 3]
    box = subject_box(alpha, 128)
    assert box.height == pytest.approx(0.75 * 240, abs=3) and box.y1 >= 238  # 75% of the height, at the bottom
    flat, content_type = result_image(gateway.post("/v1", [task(photo_uri, outputFormat="AUTO",
                                                                settings={"rgba": [255, 255, 255, 255]})]))
    assert (flat.format, content_type) == ("JPEG", "data:image/jpeg")


def test_shaping_errors_name_the_setting_and_the_limit(gateway, photo_uri):
    response = gateway.post("/v1", [task(photo_uri, settings={"shadowOpacity": 7})])
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["parameter"] == "settings.shadowOpacity" and "0..1" in error["message"]
    response = gateway.post("/v1", [task(photo_uri, settings={"outputSize": [20000, 20000]})])
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert "outputSize" in error["parameter"] and "max_pixels" in error["message"]
