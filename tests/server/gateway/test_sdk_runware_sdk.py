"""runware-sdk 1.8.0 (PyPI), Runware's current Python SDK, unchanged but for its base URLs, on both of
its transports: REST (``transport="rest"``) and WebSocket (its default), each with sync delivery,
async delivery (it polls ``getResponse``: over REST by POST, over the socket by frames) and a webhook.

The SDK runs in its own virtual environment (``tests/harness/sdks.py``) and trusts the gateway's
test certificate through ``SSL_CERT_FILE``: HTTPS and WSS, as a deployment runs them (README,
"Point your SDK here"). Every task names its ``taskType`` and an AIR-shaped model (or none), so the
SDK never fetches its schemas or model registry from the internet.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from rmbg_hosted.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from rmbg_server.launcher import free_port
from tests.harness.cluster import WebhookReceiver
from tests.harness.sdks import RUNWARE_SDK, check_cutout
from tests.server.gateway.conftest import API_KEY, WEBHOOK_SECRET

pytestmark = [pytest.mark.triton, pytest.mark.slow]

# One client script for every test: it runs the tasks it is given, one `client.run` each, and prints
# what the SDK returned or raised (RunwareError's own fields: code, parameter, message, status).
CLIENT = """
import asyncio, json, os
from runware import Runware, RunwareError

args = json.loads(os.environ["RMBG_ARGS"])


def error(e):
    return {"error": {"type": type(e).__name__, "code": e.code, "parameter": e.parameter, "message": e.message,
                      "status_code": e.status_code, "task_uuid": e.task_uuid}}


async def main():
    out = []
    try:
        async with Runware(api_key=args["key"], transport=args["transport"], http_base_url=args["http"],
                           ws_base_url=args["ws"]) as client:  # WebSocket: connects and authenticates here
            for task in args["tasks"]:
                try:
                    out.append({"ok": await client.run(task)})
                except RunwareError as e:
                    out.append(error(e))
    except RunwareError as e:
        out.append(error(e))
    return out


print(json.dumps(asyncio.run(main())))
"""


@pytest.fixture(scope="module")
def gw(gateway_factory, test_ca):
    """One HTTPS/WSS gateway with an API key and signed webhooks for the module."""
    return gateway_factory("--tls-cert", str(test_ca.cert), "--tls-key", str(test_ca.key), "--api-key", API_KEY,
                           "--webhook-secret", WEBHOOK_SECRET, ca=test_ca.ca)


def run(gw, test_ca, transport: str, *tasks: dict[str, Any], key: str = API_KEY) -> list[dict[str, Any]]:
    base = gw.url.split("://", 1)[1]
    return RUNWARE_SDK.run(CLIENT, args={"key": key, "transport": transport, "http": f"https://{base}/v1",
                                         "ws": f"wss://{base}/v1", "tasks": list(tasks)},
                           env={"SSL_CERT_FILE": str(test_ca.ca)}, timeout=180)


def removal(image: str, **fields: Any) -> dict[str, Any]:
    return {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "model": "runware:109@1",
            "inputs": {"image": image}, "outputFormat": "PNG", **fields}


def downloaded(gw, result: dict[str, Any], size: tuple[int, int]) -> None:
    """The hosted output downloads without the key (a signed URL) and is the cut-out."""
    response = gw.get(result["imageURL"], headers={})
    assert response.status_code == 200, response.text
    check_cutout(response.content, size)


@pytest.mark.parametrize("transport", ["rest", "websocket"])
@pytest.mark.parametrize("delivery", ["sync", "async"])
def test_remove_background(gw, test_ca, sdk_photo, transport, delivery):
    url, size = sdk_photo
    task = removal(url, deliveryMethod=delivery)
    [outcome] = run(gw, test_ca, transport, task)
    assert "ok" in outcome, outcome
    [result] = outcome["ok"]
    assert result["taskUUID"] == task["taskUUID"] and result["taskType"] == "removeBackground"
    assert result["imageURL"].startswith(gw.url + "/files/")
    downloaded(gw, result, size)


@pytest.mark.parametrize("transport", ["rest", "websocket"])
def test_webhook(gw, test_ca, sdk_photo, transport):
    """An async task with a webhookURL: the SDK still polls for its result, and the gateway POSTs the
    same result, signed, to the webhook."""
    url, size = sdk_photo
    with WebhookReceiver() as receiver:
        task = removal(url, webhookURL=receiver.url)
        [outcome] = run(gw, test_ca, transport, task)
        assert "ok" in outcome, outcome
        [result] = outcome["ok"]
        downloaded(gw, result, size)
        gw.wait_for("/healthz", lambda _: bool(receiver.deliveries), timeout=30)
        [delivery] = receiver.deliveries
    body = json.loads(delivery.raw)
    assert body["data"][0]["taskUUID"] == task["taskUUID"]
    assert body["data"][0]["imageURL"] == result["imageURL"]
    assert verify_signature(WEBHOOK_SECRET, delivery.headers[TIMESTAMP_HEADER], delivery.headers[SIGNATURE_HEADER],
                            delivery.raw)


@pytest.mark.parametrize("transport", ["rest", "websocket"])
def test_errors_are_the_sdks_own(gw, test_ca, sdk_photo, transport):
    """A bad option, an image that cannot be fetched, and a bad key each raise the SDK's RunwareError
    carrying our parameter, with the category the SDK derives from our code (it keeps the category,
    not the code: ``invalidParameter`` is "validation", ``invalidApiKey`` "auth")."""
    url, _ = sdk_photo
    closed = f"http://127.0.0.1:{free_port()}/gone.jpg"  # nothing listens there
    bad_option, unreachable = removal(url, settings={"rgba": [1, 2, 3]}), removal(closed)
    option_error, fetch_error = (o["error"] for o in run(gw, test_ca, transport, bad_option, unreachable))
    assert option_error["type"] == "RunwareError" and option_error["code"] == "validation", option_error
    assert option_error["parameter"] == "settings.rgba" and option_error["task_uuid"] == bad_option["taskUUID"]
    assert fetch_error["type"] == "RunwareError" and fetch_error["parameter"] == "inputs.image", fetch_error
    assert fetch_error["task_uuid"] == unreachable["taskUUID"] and closed in fetch_error["message"]
    [key_error] = run(gw, test_ca, transport, removal(url), key="not-a-key")
    assert key_error["error"]["type"] == "RunwareError" and key_error["error"]["code"] == "auth", key_error
    assert "API key" in key_error["error"]["message"]


@pytest.mark.parametrize("transport", ["rest", "websocket"])
def test_plain_http_and_ws(gateway, sdk_photo, transport):
    """Without TLS (``http://``, ``ws://``) too, against the keyless loopback gateway, whatever key the
    SDK insists on sending."""
    url, size = sdk_photo
    base = gateway.url.split("://", 1)[1]
    task = removal(url, deliveryMethod="sync")
    [outcome] = RUNWARE_SDK.run(CLIENT, args={"key": "any", "transport": transport, "http": f"http://{base}/v1",
                                              "ws": f"ws://{base}/v1", "tasks": [task]}, timeout=180)
    assert "ok" in outcome, outcome
    [result] = outcome["ok"]
    response = gateway.get(result["imageURL"])
    assert response.status_code == 200
    check_cutout(response.content, size)
