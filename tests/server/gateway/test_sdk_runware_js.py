"""@runware/sdk-js (npm), Runware's JavaScript SDK, from Node, unchanged but for its ``url``.

It speaks Runware's WebSocket only (``ws`` in Node), appending ``?sdk=js&version=...`` to the URL;
``removeBackground`` sends a ``removeBackground`` task with ``inputImage`` and, as its README writes it,
the options (``rgba``, ``alphaMatting``...) at the top level. A sync task resolves with the first
frame naming its taskUUID; ``deliveryMethod: "async"`` polls ``getResponse`` every 2 s until an item
has ``status: "success"``. Node trusts the gateway's test certificate through ``NODE_EXTRA_CA_CERTS``.
"""

from __future__ import annotations

import uuid

import pytest

from rmbg_server.launcher import free_port
from tests.harness.sdks import RUNWARE_JS, check_cutout
from tests.server.gateway.conftest import API_KEY

pytestmark = [pytest.mark.triton, pytest.mark.slow]

# The README's call: `new Runware({ apiKey })` (here with `url`), then `runware.removeBackground({...})`.
# A failure is whatever the SDK rejects with (its own `{ error: {...} }` object for a server error).
CLIENT = """
import { Runware } from "@runware/sdk-js";

const args = JSON.parse(process.env.RMBG_ARGS);
const runware = new Runware({ apiKey: args.key, url: args.url });
const out = [];
for (const call of args.calls) {
  try {
    out.push({ ok: await runware.removeBackground(call) });
  } catch (e) {
    out.push({ error: e instanceof Error ? { type: e.constructor.name, message: e.message } : e });
  }
}
await runware.disconnect();
console.log(JSON.stringify(out));
process.exit(0);
"""


@pytest.fixture(scope="module")
def gw(gateway_factory, test_ca):
    return gateway_factory("--tls-cert", str(test_ca.cert), "--tls-key", str(test_ca.key), "--api-key", API_KEY,
                           ca=test_ca.ca)


def run(gw, test_ca, *calls: dict, key: str = API_KEY) -> list[dict]:
    return RUNWARE_JS.run(CLIENT, args={"key": key, "url": f"wss://127.0.0.1:{gw.port}/v1", "calls": list(calls)},
                          env={"NODE_EXTRA_CA_CERTS": str(test_ca.ca)}, timeout=120)


def call(image: str, **fields) -> dict:
    return {"inputImage": image, "outputType": "URL", "outputFormat": "PNG", "taskUUID": str(uuid.uuid4()), **fields}


def cut_out(gw, outcome: dict, size: tuple[int, int], task: dict) -> None:
    assert "ok" in outcome, outcome
    image = outcome["ok"]
    assert image["taskType"] == "removeBackground" and image["taskUUID"] == task["taskUUID"]
    response = gw.get(image["imageURL"], headers={})
    assert response.status_code == 200, response.text
    check_cutout(response.content, size)


@pytest.mark.parametrize("delivery", [None, "async"])
def test_remove_background(gw, test_ca, sdk_photo, delivery):
    url, size = sdk_photo
    task = call(url, **({"deliveryMethod": delivery} if delivery else {}))
    [outcome] = run(gw, test_ca, task)
    cut_out(gw, outcome, size, task)


def test_options_at_the_top_level_as_the_readme_writes_them(gw, test_ca, sdk_photo):
    url, size = sdk_photo
    task = call(url, rgba=[255, 255, 255, 0], postProcessMask=False, returnOnlyMask=False)
    [outcome] = run(gw, test_ca, task)
    cut_out(gw, outcome, size, task)


def test_errors_are_the_sdks_own(gw, test_ca, sdk_photo):
    """A server error rejects with the SDK's `{ error: {code, message, parameter, taskUUID} }` object;
    a bad key with the authentication error (its `invalidApiKey` code stops the SDK reconnecting)."""
    url, _ = sdk_photo
    closed = f"http://127.0.0.1:{free_port()}/gone.jpg"  # nothing listens there
    bad_option, unreachable = call(url, settings={"rgba": [1, 2, 3]}), call(closed)
    option_error, fetch_error = (o["error"]["error"] for o in run(gw, test_ca, bad_option, unreachable))
    assert option_error["code"] == "invalidParameter" and option_error["parameter"] == "settings.rgba", option_error
    assert option_error["taskUUID"] == bad_option["taskUUID"]
    assert fetch_error["code"] == "imageFetchFailed" and fetch_error["parameter"] == "inputImage", fetch_error
    assert fetch_error["taskUUID"] == unreachable["taskUUID"]
    [bad_key] = run(gw, test_ca, call(url), key="not-a-key")
    assert bad_key["error"]["error"]["code"] == "invalidApiKey", bad_key
