"""runware 0.5.24 (PyPI), Runware's older Python SDK that integrations still pin: WebSocket only,
unchanged but for its ``url``. It sends the legacy ``imageBackgroundRemoval`` task (``inputImage``,
options such as ``rgba`` at the top level) and, for a local file, an ``imageUpload`` task first,
whose ``imageUUID`` becomes the removal's input.

It runs in its own virtual environment (``tests/harness/sdks.py``; runware-sdk installs a package of
the same name) and trusts the gateway's test certificate through ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import json

import pytest

from rmbg_hosted.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from rmbg_server.launcher import free_port
from tests.harness.cluster import WebhookReceiver
from tests.harness.sdks import RUNWARE_LEGACY, check_cutout
from tests.server.gateway.conftest import API_KEY, WEBHOOK_SECRET

pytestmark = [pytest.mark.triton, pytest.mark.slow]

# Each call is one `imageBackgroundRemoval` as the SDK's README writes it; the script prints what the
# SDK returned (its dataclasses as dicts) or raised (RunwareAPIError keeps the server's error item).
CLIENT = """
import asyncio, dataclasses, json, os
from runware import IBackgroundRemovalSettings, IImageBackgroundRemoval, Runware, RunwareAPIError

args = json.loads(os.environ["RMBG_ARGS"])


def error(e):
    found = {"type": type(e).__name__, "message": str(e)}
    if isinstance(e, RunwareAPIError):
        found |= {"code": e.code, "item": e.error_data}
    return {"error": found}


async def main():
    out = []
    runware = Runware(api_key=args["key"], url=args["url"])
    try:
        await runware.connect()
        for call in args["calls"]:
            settings = IBackgroundRemovalSettings(**call["settings"]) if "settings" in call else None
            request = IImageBackgroundRemoval(inputImage=call["image"], outputType="URL", outputFormat="PNG",
                                              settings=settings, webhookURL=call.get("webhook"))
            try:
                result = await runware.imageBackgroundRemoval(removeImageBackgroundPayload=request)
                items = result if isinstance(result, list) else [result]
                out.append({"ok": [dataclasses.asdict(item) for item in items]})
            except Exception as e:
                out.append(error(e))
    except Exception as e:
        out.append(error(e))
    finally:
        await runware.disconnect()
    return out


print(json.dumps(asyncio.run(main())))
"""


@pytest.fixture(scope="module")
def gw(gateway_factory, test_ca):
    return gateway_factory("--tls-cert", str(test_ca.cert), "--tls-key", str(test_ca.key), "--api-key", API_KEY,
                           "--webhook-secret", WEBHOOK_SECRET, ca=test_ca.ca)


def run(gw, test_ca, *calls: dict, key: str = API_KEY, timeout: float = 180) -> list[dict]:
    return RUNWARE_LEGACY.run(CLIENT, args={"key": key, "url": f"wss://127.0.0.1:{gw.port}/v1", "calls": list(calls)},
                              env={"SSL_CERT_FILE": str(test_ca.ca)}, timeout=timeout)


def cut_out(gw, outcome: dict, size: tuple[int, int]) -> dict:
    """The single image the SDK returned, downloaded without a key and checked."""
    assert "ok" in outcome, outcome
    [image] = outcome["ok"]
    assert image["taskType"] == "imageBackgroundRemoval" and image["imageUUID"]
    response = gw.get(image["imageURL"], headers={})
    assert response.status_code == 200, response.text
    check_cutout(response.content, size)
    return image


def test_url_input_with_top_level_options(gw, test_ca, sdk_photo):
    """A URL goes straight into ``inputImage``; the settings travel at the top level of the task
    (``rgba``, and the SDK's defaults ``returnOnlyMask``, ``alphaMatting``, ``postProcessMask``)."""
    url, size = sdk_photo
    [outcome] = run(gw, test_ca, {"image": url, "settings": {"rgba": [255, 255, 255, 0]}})
    image = cut_out(gw, outcome, size)
    assert image["inputImageUUID"]


def test_local_file_is_uploaded_first(gw, test_ca, sdk_photo, small_jpeg, tmp_path):
    """A path on the client's disk: the SDK sends ``imageUpload`` (a data URI) and removes the background
    of the ``imageUUID`` it gets back; the upload's own URL serves the original."""
    _, size = sdk_photo
    local = tmp_path / "photo.jpg"
    local.write_bytes(small_jpeg)
    [outcome] = run(gw, test_ca, {"image": str(local)})
    image = cut_out(gw, outcome, size)
    assert image["inputImageUUID"]


def test_webhook(gw, test_ca, sdk_photo):
    """With a webhookURL the SDK returns the acknowledgement (taskType, taskUUID) and the result goes to
    the webhook, signed."""
    url, size = sdk_photo
    with WebhookReceiver() as receiver:
        [outcome] = run(gw, test_ca, {"image": url, "webhook": receiver.url})
        assert "ok" in outcome, outcome
        [ack] = outcome["ok"]
        assert ack["taskType"] == "imageBackgroundRemoval" and ack["taskUUID"]
        gw.wait_for("/healthz", lambda _: bool(receiver.deliveries), timeout=30)
        [delivery] = receiver.deliveries
    assert verify_signature(WEBHOOK_SECRET, delivery.headers[TIMESTAMP_HEADER], delivery.headers[SIGNATURE_HEADER],
                            delivery.raw)
    [result] = json.loads(delivery.raw)["data"]
    assert result["taskUUID"] == ack["taskUUID"]
    response = gw.get(result["imageURL"], headers={})
    assert response.status_code == 200
    check_cutout(response.content, size)


def test_bad_option_and_unreachable_image(gw, test_ca, sdk_photo):
    """A bad top-level option and an unreachable image raise the SDK's RunwareAPIError with our code and
    the parameter as the legacy task names it."""
    url, _ = sdk_photo
    closed = f"http://127.0.0.1:{free_port()}/gone.jpg"  # nothing listens there
    bad_option, unreachable = run(gw, test_ca, {"image": url, "settings": {"rgba": [1, 2, 3]}}, {"image": closed})
    assert bad_option["error"]["type"] == "RunwareAPIError", bad_option
    assert bad_option["error"]["code"] == "invalidParameter" and bad_option["error"]["item"]["parameter"] == "rgba"
    assert unreachable["error"]["type"] == "RunwareAPIError", unreachable
    assert unreachable["error"]["code"] == "imageFetchFailed"
    assert unreachable["error"]["item"]["parameter"] == "inputImage"


def test_bad_key(gw, test_ca, sdk_photo):
    """A bad key fails the call with the SDK's ConnectionError carrying our message, within seconds.

    The SDK reconnects by itself whenever the server closes the socket, and that reconnect races its
    own ``connect()``, which then waits forever for an answer on a socket it replaced. So the gateway
    answers a bad key with the ``errors`` frame and leaves the closing to the client: the SDK retries
    a few times on fresh sockets, opens its circuit breaker and raises."""
    url, _ = sdk_photo
    [bad_key] = run(gw, test_ca, {"image": url}, key="not-a-key", timeout=30)
    assert bad_key["error"]["type"] == "ConnectionError" and "API key" in bad_key["error"]["message"], bad_key
