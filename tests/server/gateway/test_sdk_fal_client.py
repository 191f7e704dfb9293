"""fal-client 1.0.3 (PyPI), fal's Python client, unchanged but for ``FAL_RUN_HOST`` and the CA it trusts.

The client speaks only HTTPS: ``run``/``run_async`` POST to ``https://$FAL_RUN_HOST/<app>``, the queue
calls go to ``https://queue.$FAL_RUN_HOST/`` (submit, and status/result/cancel of a handle rebuilt
from a request id at ``/<owner>/<alias>/requests/<id>``), while a handle from ``submit`` follows the
``status_url``/``response_url`` the gateway returned. So the gateway serves TLS (a test CA, trusted
through ``SSL_CERT_FILE``) and answers the ``queue.`` host with its queue routes. The names
``gw.test`` and ``queue.gw.test`` resolve to 127.0.0.1 inside the client's process only
(``tests/harness/sdks.py``), as DNS would point both at the gateway in a deployment.
"""

from __future__ import annotations

import json

import pytest

from rmbg_hosted.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from rmbg_server.launcher import free_port
from tests.harness.cluster import WebhookReceiver
from tests.harness.sdks import FAL_CLIENT, check_cutout
from tests.server.gateway.conftest import API_KEY, WEBHOOK_SECRET

pytestmark = [pytest.mark.triton, pytest.mark.slow]
APP = "fal-ai/bria/background/remove"
HOST = "gw.test"

# One mode per run, written as fal's README writes each call; the script prints what the client
# returned, the queue updates it saw, or the FalClientHTTPError it raised (status, detail).
CLIENT = """
import asyncio, json, os
import fal_client

args = json.loads(os.environ["RMBG_ARGS"])
app, arguments, mode = args["app"], args["arguments"], args["mode"]


def status(s):
    return {"type": type(s).__name__, **{k: v for k, v in vars(s).items()}}


def main():
    if mode == "run":
        return {"result": fal_client.run(app, arguments=arguments)}
    if mode == "run_async":
        return {"result": asyncio.run(fal_client.run_async(app, arguments=arguments))}
    if mode == "submit":
        handle = fal_client.submit(app, arguments=arguments)
        events = [status(s) for s in handle.iter_events(with_logs=True)]
        out = {"request_id": handle.request_id, "events": events, "result": handle.get(),
               "status": status(fal_client.status(app, handle.request_id, with_logs=True)),
               "by_id": fal_client.result(app, handle.request_id)}
        try:  # too late to cancel: fal answers 400 ALREADY_COMPLETED
            fal_client.cancel(app, handle.request_id)
            out["cancel"] = "accepted"
        except fal_client.FalClientHTTPError as e:
            out["cancel"] = {"status": e.status_code, "body": e.response.json()}
        return out
    if mode == "subscribe":
        updates, queued = [], []
        result = fal_client.subscribe(app, arguments=arguments, with_logs=True, on_enqueue=queued.append,
                                      on_queue_update=lambda s: updates.append(status(s)))
        return {"result": result, "updates": updates, "request_id": queued[0]}
    if mode == "webhook":
        handle = fal_client.submit(app, arguments=arguments, webhook_url=args["webhook"])
        return {"request_id": handle.request_id}
    if mode == "failing":  # accepted, then failed: the final status, then the result raises
        handle = fal_client.submit(app, arguments=arguments, webhook_url=args["webhook"])
        final = [status(s) for s in handle.iter_events(with_logs=False)][-1]
        try:
            handle.get()
        except fal_client.FalClientHTTPError as e:
            return {"request_id": handle.request_id, "final": final,
                    "error": {"type": type(e).__name__, "status": e.status_code, "detail": e.message}}
        return {"request_id": handle.request_id, "final": final}
    raise ValueError(mode)


try:
    out = main()
except fal_client.FalClientHTTPError as e:
    out = {"error": {"type": type(e).__name__, "status": e.status_code, "detail": e.message,
                     "error_type": e.error_type}}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def gw(gateway_factory, test_ca):
    """HTTPS with a key and signed webhooks; the endpoint served by IS-Net (the session's BiRefNet has
    synthetic weights, whose masks say nothing)."""
    return gateway_factory("--tls-cert", str(test_ca.cert), "--tls-key", str(test_ca.key), "--api-key", API_KEY,
                           "--webhook-secret", WEBHOOK_SECRET, "--alias", f"{APP}=isnet", ca=test_ca.ca)


def run(gw, test_ca, mode: str, arguments: dict, *, key: str = API_KEY, queue: str = "subdomain",
        **extra: str) -> dict:
    """Run the client with ``FAL_RUN_HOST`` alone (the queue at ``queue.gw.test``, which resolves to the
    gateway), or with ``queue="path"``: ``FAL_QUEUE_RUN_HOST=127.0.0.1:PORT/queue``, the gateway's
    ``/queue/...`` routes, for a deployment without a DNS name for the queue host."""
    env = {"FAL_KEY": key, "FAL_RUN_HOST": f"{HOST}:{gw.port}", "SSL_CERT_FILE": str(test_ca.ca)}
    if queue == "path":
        env["FAL_QUEUE_RUN_HOST"] = f"127.0.0.1:{gw.port}/queue"
    return FAL_CLIENT.run(CLIENT, args={"app": APP, "arguments": arguments, "mode": mode, **extra}, env=env,
                          hosts=[HOST, f"queue.{HOST}"], timeout=120)


def image_of(gw, result: dict, size: tuple[int, int]) -> None:
    """fal's output object, its URL downloaded without the key, the cut-out checked."""
    image = result["image"]
    assert (image["width"], image["height"]) == size and image["content_type"] == "image/png"
    response = gw.get(image["url"], headers={})
    assert response.status_code == 200, response.text
    check_cutout(response.content, size)


@pytest.mark.parametrize("mode", ["run", "run_async"])
def test_run(gw, test_ca, sdk_photo, mode):
    url, size = sdk_photo
    out = run(gw, test_ca, mode, {"image_url": url})
    assert "result" in out, out
    image_of(gw, out["result"], size)


@pytest.mark.parametrize("queue", ["subdomain", "path"])
def test_submit_status_result(gw, test_ca, sdk_photo, queue):
    """``submit`` on the queue host, the handle's events with logs, its result, and ``status``/``result``/
    ``cancel`` by request id (the ``/fal-ai/bria/requests/<id>`` routes of the queue host)."""
    url, size = sdk_photo
    out = run(gw, test_ca, "submit", {"image_url": url}, queue=queue)
    assert "result" in out, out
    assert out["events"][-1]["type"] == "Completed" and isinstance(out["events"][-1]["logs"], list)
    assert all(e["type"] in ("Queued", "InProgress", "Completed") for e in out["events"])
    assert out["status"]["type"] == "Completed" and out["status"]["error"] is None
    image_of(gw, out["result"], size)
    assert out["by_id"] == out["result"]
    assert out["cancel"] == {"status": 400, "body": {"status": "ALREADY_COMPLETED"}}, out["cancel"]


@pytest.mark.parametrize("queue", ["subdomain", "path"])
def test_subscribe(gw, test_ca, sdk_photo, queue):
    url, size = sdk_photo
    out = run(gw, test_ca, "subscribe", {"image_url": url}, queue=queue)
    assert "result" in out, out
    assert out["request_id"] and out["updates"] and out["updates"][-1]["type"] == "Completed"
    image_of(gw, out["result"], size)


@pytest.mark.parametrize("queue", ["subdomain", "path"])
def test_webhook(gw, test_ca, sdk_photo, queue):
    """``submit(..., webhook_url=)`` sends ``?fal_webhook=``: the gateway POSTs fal's webhook body,
    ``{"request_id", "gateway_request_id", "status": "OK", "payload"}``, signed."""
    url, size = sdk_photo
    with WebhookReceiver() as receiver:
        out = run(gw, test_ca, "webhook", {"image_url": url}, webhook=receiver.url, queue=queue)
        assert "request_id" in out, out
        gw.wait_for("/healthz", lambda _: bool(receiver.deliveries), timeout=30)
        [delivery] = receiver.deliveries
    assert verify_signature(WEBHOOK_SECRET, delivery.headers[TIMESTAMP_HEADER], delivery.headers[SIGNATURE_HEADER],
                            delivery.raw)
    body = json.loads(delivery.raw)
    assert body["request_id"] == out["request_id"] and body["gateway_request_id"] == out["request_id"]
    assert body["status"] == "OK"
    image_of(gw, body["payload"], size)


def test_errors_are_the_clients_own(gw, test_ca, sdk_photo):
    """A bad option and an unreachable image raise FalClientHTTPError 422 whose detail (fal's
    ``{"loc", "msg", "type"}`` items) names the field; a bad key, 401."""
    url, _ = sdk_photo
    bad_option = run(gw, test_ca, "run", {"image_url": url, "sync_mode": "sometimes"})["error"]
    assert bad_option["type"] == "FalClientHTTPError" and bad_option["status"] == 422, bad_option
    assert bad_option["detail"][0]["loc"][-1] == "sync_mode"
    closed = f"http://127.0.0.1:{free_port()}/gone.jpg"  # nothing listens there
    unreachable = run(gw, test_ca, "run", {"image_url": closed})["error"]
    assert unreachable["type"] == "FalClientHTTPError" and unreachable["status"] == 422, unreachable
    assert unreachable["detail"][0]["loc"][-1] == "image_url" and closed in unreachable["detail"][0]["msg"]
    bad_key = run(gw, test_ca, "run", {"image_url": url}, key="not-a-key")["error"]
    assert bad_key["type"] == "FalClientHTTPError" and bad_key["status"] == 401, bad_key


def test_a_queued_request_that_fails(gw, test_ca):
    """An image that cannot be fetched is accepted and fails in the queue: the status is ``Completed``
    with its ``error``, ``result`` raises FalClientHTTPError 422 naming ``image_url``, and the webhook
    says ``"status": "ERROR"`` with a message in ``error`` and the detail as its payload (fal's
    webhook documentation: "The error property will contain a message and the payload will provide
    the error details")."""
    closed = f"http://127.0.0.1:{free_port()}/gone.jpg"  # nothing listens there
    with WebhookReceiver() as receiver:
        out = run(gw, test_ca, "failing", {"image_url": closed}, webhook=receiver.url)
        assert "final" in out, out
        gw.wait_for("/healthz", lambda _: bool(receiver.deliveries), timeout=30)
        [delivery] = receiver.deliveries
    assert out["final"]["type"] == "Completed" and closed in out["final"]["error"], out["final"]
    assert out["error"]["type"] == "FalClientHTTPError" and out["error"]["status"] == 422, out["error"]
    assert out["error"]["detail"][0]["loc"][-1] == "image_url"
    body = json.loads(delivery.raw)
    assert body["request_id"] == out["request_id"] and body["status"] == "ERROR"
    assert body["payload"]["detail"][0]["loc"][-1] == "image_url"
    assert isinstance(body.get("error"), str) and body["error"], body
