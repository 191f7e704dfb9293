"""GMI (004): the documented queue request, its status polling and outcome.media_urls."""

from __future__ import annotations

import copy
import io
import json
import re

import pytest
from PIL import Image

from tests.conftest import SHARED

pytestmark = pytest.mark.triton
GMI = "/api/v1/ie/requestqueue/apikey/requests"


def documented_request() -> dict:
    text = next((SHARED / "hosted-apis").glob("004_*.txt")).read_text()
    return json.loads(re.search(r"-d '(\{.*?\})'", text, re.S).group(1))


def test_gmi_example_verbatim(gateway, images, http_server):
    sent = copy.deepcopy(documented_request())
    assert sent["model"] == "bria-image-remove-background"
    sent["payload"]["image"] = sent["payload"]["image"].replace("https://example.com", http_server.base)
    response = gateway.post(GMI, sent, headers={"Authorization": "Bearer YOUR_API_KEY"})
    assert response.status_code == 200, response.text
    submitted = response.json()
    assert submitted["status"] == "queued" and submitted["request_id"]
    status = gateway.wait_for(f"{GMI}/{submitted['request_id']}",
                              lambda r: r.json()["status"] in ("success", "failed")).json()
    assert status["status"] == "success" and status["model"] == sent["model"]
    (url,) = status["outcome"]["media_urls"]
    image = Image.open(io.BytesIO(gateway.get(url).content))
    assert image.size == Image.open(io.BytesIO(images["/source_image.jpg"])).size and image.mode == "RGBA"


def test_gmi_failures(gateway, http_server):
    missing = gateway.post(GMI, {"model": "bria-image-remove-background", "payload": {}})
    assert missing.status_code == 400
    assert missing.json()["error"]["parameter"] == "payload.image"
    unknown = gateway.post(GMI, {"model": "kling-v2", "payload": {"image": "x"}})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unsupportedModel"
    # A forbidden address is refused at submit (as fal's sync route does), not left to fail in the queue.
    refused = gateway.post(GMI, {"model": "bria-image-remove-background", "payload": {"image": "http://10.0.0.1/x.jpg"}})
    assert refused.status_code == 400
    assert (refused.json()["error"]["code"], refused.json()["error"]["parameter"]) == ("forbiddenAddress",
                                                                                       "payload.image")
    # What can only fail once fetched fails in the queue, named the same way.
    queued = gateway.post(GMI, {"model": "bria-image-remove-background",
                                "payload": {"image": f"{http_server.base}/missing.jpg"}}).json()
    status = gateway.wait_for(f"{GMI}/{queued['request_id']}", lambda r: r.json()["status"] != "queued"
                              and r.json()["status"] != "processing").json()
    assert status["status"] == "failed" and status["error"]["code"] == "imageFetchFailed"
    assert status["error"]["parameter"] == "payload.image" and "outcome" not in status
    assert gateway.get(f"{GMI}/0123").status_code == 404
