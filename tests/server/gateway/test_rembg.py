"""rembg's server API (``rembg s``): GET with ?url= and POST with a multipart file, rembg's parameter names."""

from __future__ import annotations

import numpy as np
import pytest

from tests.server.gateway.conftest import opened

pytestmark = pytest.mark.triton


def test_get_with_a_url_and_post_with_a_file(gateway, images, http_server, small_jpeg):
    size = opened(small_jpeg).size
    by_url = gateway.get("/api/remove", params={"url": f"{http_server.base}/source_image.jpg"})
    assert by_url.status_code == 200 and by_url.headers["content-type"] == "image/png"
    assert opened(by_url.content).mode == "RGBA"
    by_file = gateway.request("POST", "/api/remove", files={"file": ("x.jpg", small_jpeg)},
                              data={"model": "isnet-general-use", "om": "true", "ppm": "true"})
    mask = opened(by_file.content)
    assert mask.mode == "L" and mask.size == size and set(np.unique(np.asarray(mask))) <= {0, 255}
    coloured = opened(gateway.request("POST", "/api/remove?bgc=0,0,255,255", files={"file": ("x.jpg", small_jpeg)},
                                      data={"a": "true", "af": "240", "ab": "10", "ae": "10",
                                            "model": "isnet-general-use"}).content)
    top_row = np.asarray(coloured)[0, :, :3]
    assert (top_row == [0, 0, 255]).all(axis=1).mean() > 0.5  # the background is bgc's blue


@pytest.mark.parametrize(("query", "parameter"), [({"model": "u2net"}, "model"), ({"vm": "true"}, "vm"),
                                                  ({"bgc": "1,2,3"}, "bgc"), ({"af": "0"}, "af"),
                                                  ({"extras": '{"x": 1}'}, "extras")])
def test_what_cannot_be_honoured_names_rembgs_parameter(gateway, small_jpeg, query, parameter):
    r = gateway.request("POST", "/api/remove", params=query, files={"file": ("x.jpg", small_jpeg)})
    assert r.status_code == 400 and r.json()["detail"].startswith(f"{parameter}: ")
