"""Runware's WebSocket on /v1 against a real gateway and Triton, spoken frame by frame (the SDKs' own
conversation is in the test_sdk_* modules): authentication, ping, tasks old and new, one frame per
result, conflicts, session resume, limits and the keyless origin guard."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import ssl
import uuid

import httpx
import numpy as np
import pytest
import websockets
from PIL import Image

from tests.harness import cluster
from tests.harness.tls import make_test_ca
from tests.server.gateway.conftest import API_KEY

pytestmark = pytest.mark.triton


def ws_url(gateway) -> str:
    return gateway.url.replace("http://", "ws://") + "/v1"


def data_uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def removal(image: str, **kw) -> dict:
    return {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "inputs": {"image": image},
            "outputType": "base64Data", **kw}


async def connect(url: str, key: str = "any key will do without keys", session: str | None = None, **kw):
    ws = await websockets.connect(url, max_size=64 * 1024 * 1024, **kw)
    auth = {"taskType": "authentication", "apiKey": key}
    if session:
        auth["connectionSessionUUID"] = session
    await ws.send(json.dumps([auth]))
    return ws, json.loads(await ws.recv())


async def frames(ws, count: int, timeout: float = 120) -> list[dict]:
    return [json.loads(await asyncio.wait_for(ws.recv(), timeout)) for _ in range(count)]


def size_of(b64: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(b64))).size


def test_authentication_ping_and_one_frame_per_task(gateway, small_jpeg):
    async def main():
        ws, auth = await connect(ws_url(gateway))
        (item,) = auth["data"]
        assert item["taskType"] == "authentication" and uuid.UUID(item["connectionSessionUUID"])
        await ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
        assert json.loads(await ws.recv()) == {"data": [{"taskType": "ping", "pong": True}]}
        good, bad = removal(data_uri(small_jpeg)), removal(data_uri(small_jpeg), settings={"rgba": [1, 2, 3]})
        await ws.send(json.dumps([good, bad]))
        got = await frames(ws, 2)
        await ws.close()
        return got

    got = asyncio.run(main())
    errors = [f for f in got if "errors" in f]
    results = [f for f in got if "data" in f]
    assert len(errors) == len(results) == 1 and "errors" not in results[0]  # a success carries no errors key
    (error,) = errors[0]["errors"]
    assert (error["code"], error["parameter"], error["taskType"]) == ("invalidParameter", "settings.rgba",
                                                                       "removeBackground")
    (result,) = results[0]["data"]
    assert size_of(result["imageBase64Data"]) == Image.open(io.BytesIO(small_jpeg)).size


def test_async_tasks_get_response_and_conflicts(gateway, small_jpeg):
    async def main():
        ws, _ = await connect(ws_url(gateway))
        task = removal(data_uri(small_jpeg), deliveryMethod="async")
        await ws.send(json.dumps([task]))
        (ack,) = (await frames(ws, 1))[0]["data"]
        await ws.send(json.dumps([task]))  # a re-send after a reconnect: Runware's code, the SDK's ack
        (again,) = (await frames(ws, 1))[0]["errors"]
        for _ in range(240):
            await ws.send(json.dumps([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]))
            (item,) = (await frames(ws, 1))[0]["data"]
            if item.get("status") == "success":
                break
            await asyncio.sleep(0.25)
        await ws.close()
        return task, ack, again, item

    task, ack, again, item = asyncio.run(main())
    assert ack == {"taskType": "removeBackground", "taskUUID": task["taskUUID"], "status": "queued"}
    assert (again["code"], again["taskUUID"]) == ("conflictTaskUUID", task["taskUUID"])
    assert item["status"] == "success" and item["imageBase64Data"]


def test_the_legacy_tasks_of_runware_0_5(gateway, small_jpeg):
    """imageUpload, then imageBackgroundRemoval of the uploaded imageUUID with its options at the top level."""
    async def main():
        ws, _ = await connect(ws_url(gateway))
        upload = {"taskType": "imageUpload", "taskUUID": str(uuid.uuid4()), "image": data_uri(small_jpeg)}
        await ws.send(json.dumps([upload]))
        (uploaded,) = (await frames(ws, 1))[0]["data"]
        legacy = {"taskType": "imageBackgroundRemoval", "taskUUID": str(uuid.uuid4()),
                  "inputImage": uploaded["imageUUID"], "outputType": "base64Data", "rgba": [255, 255, 255, 0],
                  "postProcessMask": True, "returnOnlyMask": True}
        await ws.send(json.dumps([legacy, {**legacy, "taskUUID": str(uuid.uuid4()), "alphaMattingErodeSize": 0}]))
        got = await frames(ws, 2)
        await ws.close()
        return upload, uploaded, got

    upload, uploaded, got = asyncio.run(main())
    assert uploaded["taskType"] == "imageUpload" and uploaded["taskUUID"] == upload["taskUUID"]
    assert httpx.get(uploaded["imageURL"]).content == small_jpeg  # the upload's URL needs no key
    (result,) = next(f for f in got if "data" in f)["data"]
    (error,) = next(f for f in got if "errors" in f)["errors"]
    assert result["taskType"] == "imageBackgroundRemoval" and result["inputImageUUID"] == uploaded["imageUUID"]
    mask = Image.open(io.BytesIO(base64.b64decode(result["imageBase64Data"])))
    assert mask.mode == "L" and set(np.unique(np.asarray(mask))) <= {0, 255}  # returnOnlyMask + postProcessMask
    assert (error["code"], error["parameter"]) == ("invalidParameter", "alphaMattingErodeSize")  # as sent


def test_a_dropped_socket_gets_its_results_on_the_resumed_session(gateway, small_jpeg):
    async def main():
        ws, auth = await connect(ws_url(gateway))
        session = auth["data"][0]["connectionSessionUUID"]
        task = removal(data_uri(small_jpeg))
        await ws.send(json.dumps([task]))
        await ws.close()  # before the result
        await asyncio.sleep(2.0)
        ws, again = await connect(ws_url(gateway), session=session)
        (result,) = (await frames(ws, 1))[0]["data"]
        await ws.close()
        return session, again, task, result

    session, again, task, result = asyncio.run(main())
    assert again["data"][0]["connectionSessionUUID"] == session
    assert result["taskUUID"] == task["taskUUID"] and result["imageBase64Data"]


def test_a_bad_key_is_refused_with_a_clear_close_code(gateway_factory):
    keyed = gateway_factory("--api-key", API_KEY, "--ws-per-key", "2")

    async def main():
        ws, answer = await connect(ws_url(keyed), key="not-the-key-0000000000000")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        sockets = [await connect(ws_url(keyed), key=API_KEY) for _ in range(2)]
        third, refused = await connect(ws_url(keyed), key=API_KEY)
        with pytest.raises(websockets.ConnectionClosed) as full:
            await third.recv()
        for ws_, _ in sockets:
            await ws_.close()
        return answer, closed.value.rcvd.code, refused, full.value.rcvd.code

    answer, code, refused, full_code = asyncio.run(main())
    (error,) = answer["errors"]
    assert (error["code"], error["taskType"]) == ("invalidApiKey", "authentication") and code == 4001
    assert refused["errors"][0]["code"] == "tooManyConnections" and full_code == 4008


def test_a_keyless_gateway_refuses_sockets_from_other_origins(gateway):
    async def main():
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(ws_url(gateway), origin="https://evil.example")
        ok, auth = await connect(ws_url(gateway), origin=gateway.url)
        await ok.close()
        return refused.value.response.status_code, auth

    status, auth = asyncio.run(main())
    assert status == 403 and auth["data"][0]["taskType"] == "authentication"


def test_https_and_wss_with_a_certificate(triton, tmp_path, small_jpeg):
    """--tls-cert/--tls-key: the same routes over HTTPS and WSS; a client trusts the CA as a user would."""
    ca = make_test_ca(tmp_path / "tls")
    gw = cluster.GatewayProcess([triton.grpc_url], tmp_path / "data", ca=ca.ca, log_file=tmp_path / "gw.log",
                                args=["--tls-cert", str(ca.cert), "--tls-key", str(ca.key)]).start()
    try:
        assert gw.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(ca.ca))
        result = httpx.post(f"{gw.url}/v1", json=removal(data_uri(small_jpeg)), verify=trusted, timeout=60)
        assert result.status_code == 200, result.text
        assert result.json()["data"][0]["imageBase64Data"]
        with pytest.raises(httpx.ConnectError):  # without the CA the certificate is not trusted
            httpx.get(f"{gw.url}/healthz")

        async def secure_socket():
            ws, auth = await connect(gw.url.replace("https://", "wss://") + "/v1", ssl=trusted)
            await ws.close()
            return auth

        assert asyncio.run(secure_socket())["data"][0]["taskType"] == "authentication"
    finally:
        gw.stop()


def test_tls_flags_go_together(tmp_path):
    from rmbg_cli.main import main

    assert main(["gateway", "--tls-cert", str(tmp_path / "missing.pem"), "--data-dir", str(tmp_path)]) == 2
