"""@fal-ai/client (npm), fal's JavaScript client, from Node, unchanged but for its ``proxyUrl``.

The JS client has no host setting: it always builds ``https://fal.run/...`` and
``https://queue.fal.run/...``. Its ``proxyUrl`` mode is how a deployment points it elsewhere: every
request goes to that URL with the real target in an ``x-fal-target-url`` header, which the gateway
serves as the route the target names (``fal.run`` the sync routes, ``queue.fal.run`` the queue). Outside
a browser the proxy applies only with ``when: "always"``. Node trusts the gateway's test certificate
through ``NODE_EXTRA_CA_CERTS``. Each call is the one fal's documentation (002) and README show.
"""

from __future__ import annotations

import json

import pytest

from rmbg_hosted.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from rmbg_server.launcher import free_port
from tests.harness.cluster import WebhookReceiver
from tests.harness.sdks import FAL_JS, check_cutout
from tests.server.gateway.conftest import API_KEY, WEBHOOK_SECRET

pytestmark = [pytest.mark.triton, pytest.mark.slow]
APP = "fal-ai/bria/background/remove"

CLIENT = """
import { fal, ApiError } from "@fal-ai/client";

const args = JSON.parse(process.env.RMBG_ARGS);
fal.config({ proxyUrl: { url: args.proxy, when: "always" } });  // credentials: FAL_KEY
const input = args.input;

async function main() {
  if (args.mode === "subscribe") {  // fal's own example for this endpoint (002)
    const updates = [];
    const result = await fal.subscribe(args.app, {
      input, logs: true,
      onQueueUpdate: (update) => { updates.push(update); },
    });
    return { result: result.data, requestId: result.requestId, updates };
  }
  if (args.mode === "run") {
    const result = await fal.run(args.app, { input });
    return { result: result.data };
  }
  if (args.mode === "queue") {
    const { request_id } = await fal.queue.submit(args.app, { input });
    let status;
    do {
      status = await fal.queue.status(args.app, { requestId: request_id, logs: true });
    } while (status.status !== "COMPLETED" && await new Promise((r) => setTimeout(r, 200, true)));
    const result = await fal.queue.result(args.app, { requestId: request_id });
    return { requestId: request_id, status, result: result.data };
  }
  if (args.mode === "webhook") {
    const { request_id } = await fal.queue.submit(args.app, { input, webhookUrl: args.webhook });
    return { requestId: request_id };
  }
  throw new Error(args.mode);
}

let out;
try {
  out = await main();
} catch (e) {
  out = { error: { type: e.constructor.name, isApiError: e instanceof ApiError, status: e.status,
                   message: e.message, body: e.body } };
}
console.log(JSON.stringify(out));
process.exit(0);
"""


@pytest.fixture(scope="module")
def gw(gateway_factory, test_ca):
    """HTTPS with a key and signed webhooks; the endpoint served by IS-Net (the session's BiRefNet has
    synthetic weights, whose masks say nothing)."""
    return gateway_factory("--tls-cert", str(test_ca.cert), "--tls-key", str(test_ca.key), "--api-key", API_KEY,
                           "--webhook-secret", WEBHOOK_SECRET, "--alias", f"{APP}=isnet", ca=test_ca.ca)


def run(gw, test_ca, mode: str, input: dict, *, key: str = API_KEY, **extra: str) -> dict:
    env = {"FAL_KEY": key, "NODE_EXTRA_CA_CERTS": str(test_ca.ca)}
    return FAL_JS.run(CLIENT, args={"app": APP, "input": input, "mode": mode, "proxy": f"{gw.url}/api/fal/proxy",
                                    **extra}, env=env, timeout=120)


def image_of(gw, result: dict, size: tuple[int, int]) -> None:
    image = result["image"]
    assert (image["width"], image["height"]) == size and image["content_type"] == "image/png"
    response = gw.get(image["url"], headers={})
    assert response.status_code == 200, response.text
    check_cutout(response.content, size)


def test_subscribe_as_documented(gw, test_ca, sdk_photo):
    url, size = sdk_photo
    out = run(gw, test_ca, "subscribe", {"image_url": url})
    assert "result" in out, out
    # the documented example prints result.requestId: the client reads it from the result's
    # x-fal-request-id response header
    assert out["requestId"], "no x-fal-request-id header on the queue's result"
    assert out["updates"][-1]["status"] == "COMPLETED"
    assert all(u["status"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED") for u in out["updates"])
    image_of(gw, out["result"], size)


def test_run(gw, test_ca, sdk_photo):
    url, size = sdk_photo
    out = run(gw, test_ca, "run", {"image_url": url})
    assert "result" in out, out
    image_of(gw, out["result"], size)


def test_queue_submit_status_result(gw, test_ca, sdk_photo):
    """``fal.queue`` builds ``/fal-ai/bria/requests/<id>/status?logs=1`` and ``.../requests/<id>`` itself."""
    url, size = sdk_photo
    out = run(gw, test_ca, "queue", {"image_url": url})
    assert "result" in out, out
    assert out["status"]["status"] == "COMPLETED" and isinstance(out["status"]["logs"], list)
    image_of(gw, out["result"], size)


def test_webhook(gw, test_ca, sdk_photo):
    url, size = sdk_photo
    with WebhookReceiver() as receiver:
        out = run(gw, test_ca, "webhook", {"image_url": url}, webhook=receiver.url)
        assert "requestId" in out, out
        gw.wait_for("/healthz", lambda _: bool(receiver.deliveries), timeout=30)
        [delivery] = receiver.deliveries
    assert verify_signature(WEBHOOK_SECRET, delivery.headers[TIMESTAMP_HEADER], delivery.headers[SIGNATURE_HEADER],
                            delivery.raw)
    body = json.loads(delivery.raw)
    assert body["request_id"] == out["requestId"] and body["status"] == "OK"
    image_of(gw, body["payload"], size)


def test_errors_are_the_clients_own(gw, test_ca, sdk_photo):
    """A bad option and an unreachable image are the client's ValidationError (422) whose body names
    the field in fal's ``detail``; a bad key is its ApiError with status 401."""
    url, _ = sdk_photo
    bad_option = run(gw, test_ca, "run", {"image_url": url, "sync_mode": "sometimes"})["error"]
    assert bad_option["type"] == "ValidationError" and bad_option["status"] == 422, bad_option
    assert bad_option["body"]["detail"][0]["loc"][-1] == "sync_mode"
    closed = f"http://127.0.0.1:{free_port()}/gone.jpg"  # nothing listens there
    unreachable = run(gw, test_ca, "run", {"image_url": closed})["error"]
    assert unreachable["type"] == "ValidationError" and unreachable["status"] == 422, unreachable
    assert unreachable["body"]["detail"][0]["loc"][-1] == "image_url"
    bad_key = run(gw, test_ca, "run", {"image_url": url}, key="not-a-key")["error"]
    assert bad_key["isApiError"] and bad_key["status"] == 401, bad_key
