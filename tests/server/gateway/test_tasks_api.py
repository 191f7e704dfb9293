"""POST /v1: the Runware task arrays of 001 and 003, verbatim but for the input URL, over real HTTP
against the session's Triton; async tasks, getResponse, webhooks, hosted outputs and every output type."""

from __future__ import annotations

import base64
import copy
import json
import re
import time
import uuid

import pytest

from rmbg_hosted.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.server.gateway.conftest import COST, WEBHOOK_SECRET, hosted_examples, opened, relocate

pytestmark = pytest.mark.triton


def task(image: str, **fields) -> dict:
    """A small task on the fast model (the 256 px BiRefNet of the test repository)."""
    return {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "model": "bria:2@1",
            "inputs": {"image": image}, **fields}


@pytest.fixture
def photo(images, http_server) -> tuple[str, bytes]:
    path = next(p for p in images if p.endswith(".jpg"))
    return http_server.base + path, images[path]


def test_runware_rembg_examples_verbatim(gateway, images, http_server):
    """001: both documented requests (runware:109@1 = IS-Net, alpha matting), in one array."""
    examples = [e for e in hosted_examples("001", '"taskType"') if "inputs" in e]  # requests, not responses
    assert len(examples) == 2
    sent = copy.deepcopy(examples)
    for example in sent:
        example["inputs"]["image"] = relocate(example["inputs"]["image"], http_server.base)
    response = gateway.post("/v1", sent)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body and len(body["data"]) == 2
    by_uuid = {r["taskUUID"]: r for r in body["data"]}
    for example in sent:
        result = by_uuid[example["taskUUID"]]
        assert result["taskType"] == "removeBackground" and result["taskUUID"] == example["taskUUID"]
        assert uuid.UUID(result["imageUUID"]).version == 4 and uuid.UUID(result["inputImageUUID"])
        # a signed capability ending in the output's name (PNG is the default): /files/EXPIRES/SIGNATURE/NAME
        assert re.fullmatch(rf"{re.escape(gateway.url)}/files/\d+/[0-9a-f]{{64}}/{result['imageUUID']}\.png",
                            result["imageURL"]), result["imageURL"]
        out = opened(gateway.get(result["imageURL"]).content)
        source = opened(images["/" + example["inputs"]["image"].split("/", 3)[3]])
        assert out.format == "PNG" and out.mode == "RGBA" and out.size == source.size


def test_bria_rmbg2_examples_verbatim(gateway, images, http_server):
    """003: the three documented requests (bria:2@1, providerSettings.bria.preserveAlpha), one by one."""
    examples = [e for e in hosted_examples("003", '"taskType"') if "inputs" in e]
    assert len(examples) == 3
    for example in examples:
        sent = copy.deepcopy(example)
        sent["inputs"]["image"] = relocate(sent["inputs"]["image"], http_server.base)
        response = gateway.post("/v1", sent)
        assert response.status_code == 200, response.text
        (result,) = response.json()["data"]
        assert set(result) == {"taskType", "taskUUID", "imageUUID", "inputImageUUID", "imageURL"}
        assert result["taskUUID"] == example["taskUUID"]
        out = gateway.get(result["imageURL"])
        assert out.status_code == 200 and out.headers["content-type"] == "image/png"


def test_output_types_cost_and_formats(gateway, photo):
    url, data = photo
    size = opened(data).size
    response = gateway.post("/v1", [task(url, outputType="base64Data", includeCost=True),
                                    task(url, outputType="dataURI", outputFormat="WEBP", outputQuality=80),
                                    task(url, outputType="URL", outputFormat="JPG")])
    assert response.status_code == 200, response.text
    b64, uri, jpg = response.json()["data"]
    assert b64["cost"] == COST and "cost" not in uri
    assert opened(base64.b64decode(b64["imageBase64Data"])).size == size
    assert uri["imageDataURI"].startswith("data:image/webp;base64,")
    assert opened(base64.b64decode(uri["imageDataURI"].split(",", 1)[1])).format == "WEBP"
    assert jpg["imageURL"].endswith(".jpg") and opened(gateway.get(jpg["imageURL"]).content).format == "JPEG"


def test_upload_endpoint(gateway, photo, http_server):
    url, _ = photo
    endpoint = f"{http_server.base}/bucket/{uuid.uuid4()}.png?X-Amz-Signature=abc"
    (result,) = gateway.post("/v1", task(url, uploadEndpoint=endpoint)).json()["data"]
    assert result["imageURL"] == endpoint.split("?")[0]
    content_type, uploaded = http_server.handler.uploads[endpoint.removeprefix(http_server.base)]
    assert content_type == "image/png" and opened(uploaded).format == "PNG"


def test_an_earlier_output_is_an_input(gateway, photo):
    url, data = photo
    (first,) = gateway.post("/v1", task(url)).json()["data"]
    response = gateway.post("/v1", task(first["imageUUID"], outputType="base64Data"))
    assert response.status_code == 200, response.text
    (second,) = response.json()["data"]
    assert second["inputImageUUID"] == first["imageUUID"]
    assert opened(base64.b64decode(second["imageBase64Data"])).size == opened(data).size
    missing = str(uuid.uuid4())
    error = gateway.post("/v1", task(missing)).json()["errors"][0]
    assert (error["code"], error["parameter"]) == ("imageNotFound", "inputs.image") and missing in error["message"]


def test_async_task_and_get_response(gateway, photo):
    url, data = photo
    sent = task(url, deliveryMethod="async", outputType="base64Data")
    started = time.monotonic()
    ack = gateway.post("/v1", sent)
    assert ack.status_code == 200 and time.monotonic() - started < 5
    assert ack.json()["data"] == [{"taskType": "removeBackground", "taskUUID": sent["taskUUID"], "status": "queued"}]
    poll = {"taskType": "getResponse", "taskUUID": sent["taskUUID"]}
    deadline = time.monotonic() + 120
    while True:
        (item,) = gateway.post("/v1", poll).json()["data"]
        if item["status"] == "success" or time.monotonic() > deadline:
            break
        assert item["status"] in ("queued", "processing")
        time.sleep(0.2)
    assert item["status"] == "success" and item["taskUUID"] == sent["taskUUID"]
    assert opened(base64.b64decode(item["imageBase64Data"])).size == opened(data).size
    again = gateway.post("/v1", sent).json()["errors"][0]  # an accepted async taskUUID is used
    assert again["code"] == "conflictTaskUUID"
    unknown = gateway.post("/v1", {"taskType": "getResponse", "taskUUID": str(uuid.uuid4())})
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["code"] == "taskNotFound"


def _wait_for_posts(http_server, path: str, n: int, timeout: float = 120.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        posts = [p for p in http_server.handler.posts if p[0] == path]
        if len(posts) >= n:
            return posts
        time.sleep(0.1)
    raise AssertionError(f"{len(posts)} webhook calls to {path}, expected {n}")


@pytest.mark.parametrize("delivery", ["async", "sync"])
def test_webhook_is_signed_and_retried(gateway, photo, http_server, delivery):
    url, _ = photo
    hook = f"/hooks/{uuid.uuid4()}"
    http_server.handler.failures[hook] = 1  # the receiver is down once: the delivery is retried
    sent = task(url, deliveryMethod=delivery, webhookURL=http_server.base + hook)
    assert gateway.post("/v1", sent).status_code == 200
    posts = _wait_for_posts(http_server, hook, 2)
    _, headers, raw = posts[-1]
    body = json.loads(raw)
    assert body["data"][0]["taskUUID"] == sent["taskUUID"] and body["data"][0]["imageURL"].startswith(gateway.url)
    assert verify_signature(WEBHOOK_SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], raw)


def test_a_bad_task_fails_alone(gateway, photo):
    url, _ = photo
    good, bad = task(url, outputType="base64Data"), task(url, settings={"alphaMattingErodeSize": 0})
    response = gateway.post("/v1", [good, bad])
    assert response.status_code == 200
    body = response.json()
    assert [d["taskUUID"] for d in body["data"]] == [good["taskUUID"]]
    assert [e["taskUUID"] for e in body["errors"]] == [bad["taskUUID"]]
    every_bad = gateway.post("/v1", [task(url, settings={"nope": 1}), {"taskType": "removeBackground"}])
    assert every_bad.status_code == 400 and "data" not in every_bad.json()
    assert len(every_bad.json()["errors"]) == 2
