"""fal (002): the documented remove and replace requests, sync and through the queue."""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from urllib.parse import quote

import pytest

from rmbg_hosted.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.harness.cluster import WebhookReceiver
from tests.server.gateway.conftest import WEBHOOK_SECRET, hosted_examples, opened, relocate

pytestmark = pytest.mark.triton


def example(kind: str, base: str) -> dict:
    """The documented input example of the remove or replace tab, with local input URLs."""
    found = [e for e in hosted_examples("002", '"image_url"') if ("ref_image_url" in e) == (kind == "replace")
             and "sync_mode" in e]
    sent = copy.deepcopy(found[0])
    for key in ("image_url", "ref_image_url"):
        if key in sent:
            sent[key] = relocate(sent[key], base)
    return sent


def test_remove_example_verbatim(gateway, images, http_server):
    sent = example("remove", http_server.base)
    assert sent["sync_mode"] is False and set(sent) == {"image_url", "sync_mode"}
    response = gateway.post("/fal-ai/bria/background/remove", sent, headers={"Authorization": "Key unused"})
    assert response.status_code == 200, response.text
    image = response.json()["image"]
    source = opened(images[sent["image_url"].removeprefix(http_server.base)])
    out = gateway.get(image["url"])
    assert image["url"].startswith(f"{gateway.url}/files/") and image["file_name"] == image["url"].rsplit("/")[-1]
    assert (image["width"], image["height"]) == source.size and image["content_type"] == "image/png"
    assert image["file_size"] == len(out.content) and opened(out.content).size == source.size
    assert uuid.UUID(response.headers["x-fal-request-id"]).version == 4  # @fal-ai/client's result.requestId


def test_remove_sync_mode_returns_a_data_uri(gateway, images, http_server):
    sent = {**example("remove", http_server.base), "sync_mode": True}
    image = gateway.post("/fal-ai/bria/background/remove", sent).json()["image"]
    assert image["url"].startswith("data:image/png;base64,")
    assert len(base64.b64decode(image["url"].split(",", 1)[1])) == image["file_size"]


def test_replace_example_as_documented_is_served_naming_what_it_ignored(gateway, images, http_server):
    """The document's example carries a prompt beside ref_image_url: the reference is composited, the
    generation-only fields are ignored and named."""
    sent = example("replace", http_server.base)
    assert sent["prompt"] and sent["ref_image_url"]
    response = gateway.post("/fal-ai/bria/background/replace", sent)
    assert response.status_code == 200, response.text
    ignored = {name.strip() for name in response.headers["X-Rmbg-Ignored"].split(",")}
    assert "prompt" in ignored and ignored <= {"prompt", "negative_prompt", "refine_prompt", "fast"}
    (image,) = response.json()["images"]
    assert opened(gateway.get(image["url"]).content).size == opened(
        images[sent["image_url"].removeprefix(http_server.base)]).size


def test_replace_with_a_prompt_alone_is_refused(gateway, images, http_server):
    sent = example("replace", http_server.base)
    sent.pop("ref_image_url")
    for path in ("/fal-ai/bria/background/replace", "/queue/fal-ai/bria/background/replace"):
        response = gateway.post(path, sent)
        assert response.status_code == 422
        (detail,) = response.json()["detail"]
        assert detail["loc"] == ["body", "prompt"] and "generative" in detail["msg"]


def test_replace_composites_the_reference_image(gateway, images, http_server):
    sent = example("replace", http_server.base)
    sent.pop("prompt")
    response = gateway.post("/fal-ai/bria/background/replace", sent)
    assert response.status_code == 200, response.text
    assert "prompt" not in [n.strip() for n in response.headers.get("X-Rmbg-Ignored", "").split(",")]
    body = response.json()
    (image,) = body["images"]
    out = opened(gateway.get(image["url"]).content)
    assert out.size == opened(images[sent["image_url"].removeprefix(http_server.base)]).size
    assert body["seed"] == 0


@pytest.mark.parametrize(("body", "loc"), [({}, ["body", "image_url"]),
                                           ({"image_url": "x", "sync_mode": "yes"}, ["body", "sync_mode"]),
                                           ({"image_url": "x", "format": "png"}, ["body", "format"])])
def test_fal_validation_errors(gateway, body, loc):
    response = gateway.post("/fal-ai/bria/background/remove", body)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == loc


def test_fal_bad_inputs_name_the_parameter(gateway, http_server):
    for image_url, code in (("http://10.0.0.1/x.jpg", "forbiddenAddress"), ("/etc/passwd", "invalidImage"),
                            (f"{http_server.base}/not-an-image.txt", "invalidImage")):
        response = gateway.post("/fal-ai/bria/background/remove", {"image_url": image_url})
        assert response.status_code == 422, response.text
        (detail,) = response.json()["detail"]
        assert (detail["loc"], detail["type"]) == (["body", "image_url"], code)


def test_fal_queue(gateway, images, http_server):
    sent = example("remove", http_server.base)
    queued = gateway.post("/queue/fal-ai/bria/background/remove", sent)
    assert queued.status_code == 200, queued.text
    q = queued.json()
    assert set(q) == {"request_id", "status_url", "response_url", "cancel_url"}
    assert q["status_url"] == f"{gateway.url}/queue/fal-ai/bria/background/remove/requests/{q['request_id']}/status"
    status = gateway.wait_for(q["status_url"], lambda r: r.json()["status"] == "COMPLETED")
    assert status.json()["status"] == "COMPLETED" and status.json()["response_url"] == q["response_url"]
    result = gateway.get(q["response_url"]).json()
    assert opened(gateway.get(result["image"]["url"]).content).size == (result["image"]["width"],
                                                                       result["image"]["height"])
    # fal's clients may use the app-level form of the same URLs
    assert gateway.get(f"/queue/fal-ai/bria/requests/{q['request_id']}").json() == result
    assert gateway.request("PUT", q["cancel_url"]).json() == {"status": "ALREADY_COMPLETED"}
    assert gateway.get("/queue/fal-ai/bria/background/remove/requests/nope/status").status_code == 404
    # every answer about a request names it, as fal's do (@fal-ai/client reads result.requestId from it)
    named = [queued, status, gateway.get(q["response_url"]),
             gateway.get(f"/queue/fal-ai/bria/requests/{q['request_id']}"), gateway.request("PUT", q["cancel_url"])]
    assert [r.headers.get("x-fal-request-id") for r in named] == [q["request_id"]] * len(named)
    assert gateway.get("/queue/fal-ai/bria/requests/nope").headers["x-fal-request-id"] == "nope"


def test_fal_queue_replace_and_a_failing_job(gateway, images, http_server):
    sent = example("replace", http_server.base)
    sent.pop("prompt")
    q = gateway.post("/queue/fal-ai/bria/background/replace", sent).json()
    assert gateway.wait_for(q["status_url"], lambda r: r.json()["status"] == "COMPLETED").status_code == 200
    assert gateway.get(q["response_url"]).json()["images"][0]["url"].startswith(gateway.url)
    bad = gateway.post("/queue/fal-ai/bria/background/remove", {"image_url": f"{http_server.base}/missing.jpg"}).json()
    status = gateway.wait_for(bad["status_url"], lambda r: r.json()["status"] == "COMPLETED").json()
    assert "HTTP 404" in status["error"]
    failed = gateway.get(bad["response_url"])
    assert failed.status_code == 422 and failed.json()["detail"][0]["loc"] == ["body", "image_url"]


def test_the_queue_host_and_the_js_clients_proxy_form_reach_the_queue(gateway, images, http_server):
    """fal-client posts to https://queue.$FAL_RUN_HOST/...; @fal-ai/client's proxyUrl names the target in a header."""
    sent = example("remove", http_server.base)
    host = gateway.url.split("//", 1)[1]
    by_host = gateway.post("/fal-ai/bria/background/remove", sent, headers={"Host": f"queue.{host}"}).json()
    assert set(by_host) == {"request_id", "status_url", "response_url", "cancel_url"}
    assert by_host["status_url"].startswith(f"http://queue.{host}/queue/fal-ai/bria/background/remove/requests/")
    proxied = gateway.post("/api/fal/proxy", sent,
                           headers={"x-fal-target-url": "https://queue.fal.run/fal-ai/bria/background/remove"}).json()
    rid = proxied["request_id"]
    status = gateway.wait_for("/api/fal/proxy", lambda r: r.json()["status"] == "COMPLETED", headers={
        "x-fal-target-url": f"https://queue.fal.run/fal-ai/bria/requests/{rid}/status?logs=1"}).json()
    assert [line["message"] for line in status["logs"]] == ["request queued", "request completed"]
    assert gateway.get(proxied["status_url"]).json()["logs"] is None  # without ?logs=1 the key is there, null
    sync = gateway.post("/anything", sent, headers={"x-fal-target-url": "https://fal.run/fal-ai/bria/background/remove"})
    assert sync.status_code == 200 and sync.json()["image"]["url"]


def test_fal_webhook_receives_fals_body(gateway, images, http_server):
    with WebhookReceiver() as receiver:
        sent = example("remove", http_server.base)
        q = gateway.post(f"/queue/fal-ai/bria/background/remove?fal_webhook={quote(receiver.url)}", sent).json()
        failing = gateway.post(f"/queue/fal-ai/bria/background/remove?fal_webhook={quote(receiver.url)}",
                               {"image_url": f"{http_server.base}/missing.jpg"}).json()
        deadline = time.monotonic() + 120
        while len(receiver.deliveries) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    bodies = {json.loads(d.raw)["request_id"]: json.loads(d.raw) for d in receiver.deliveries}
    ok, error = bodies[q["request_id"]], bodies[failing["request_id"]]
    assert ok["status"] == "OK" and ok["gateway_request_id"] == q["request_id"] and ok["payload"]["image"]["url"]
    assert error["status"] == "ERROR" and error["payload"]["detail"][0]["loc"] == ["body", "image_url"]
    assert all(verify_signature(WEBHOOK_SECRET, d.headers[TIMESTAMP_HEADER], d.headers[SIGNATURE_HEADER], d.raw)
               for d in receiver.deliveries)
    refused = gateway.post("/queue/fal-ai/bria/background/remove?fal_webhook=ftp://x/y", sent)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "fal_webhook"]
