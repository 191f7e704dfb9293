"""The client library against the real server: hosted-API tasks (003's example) through both clients,
webhooks, and the async client's deadline and retries (issue 10 item 11)."""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import os
import signal
import time

import pytest
from PIL import Image

from rmbg_client import AsyncRmbgClient, RmbgClient, ServerUnavailableError
from rmbg_hosted.fetch import FetchPolicy
from rmbg_server.watchdog import stub_processes
from tests.server.gateway.conftest import hosted_examples, relocate

pytestmark = pytest.mark.triton
LOCAL = FetchPolicy.allowing(["127.0.0.1/32"])


@pytest.fixture
def rmbg2_example(http_server, small_jpeg) -> dict:
    example = copy.deepcopy([e for e in hosted_examples("003", '"taskType"') if "inputs" in e][0])
    example["inputs"]["image"] = relocate(example["inputs"]["image"], http_server.base)
    http_server.handler.files[example["inputs"]["image"].removeprefix(http_server.base)] = small_jpeg
    return example


def test_both_clients_run_the_documented_task(triton, rmbg2_example, small_jpeg, http_server):
    """003's request as is: providerSettings and model bria:2@1 (BiRefNet); no outputType and no
    uploadEndpoint, so the library (which hosts nothing) answers base64, and a webhook is POSTed."""
    size = Image.open(io.BytesIO(small_jpeg)).size
    task = {**rmbg2_example, "webhookURL": f"{http_server.base}/hooks/client", "deliveryMethod": "async", "ttl": 600}
    result = RmbgClient(triton.grpc_url, fetch_policy=LOCAL).remove_background(task)
    assert result["taskUUID"] == task["taskUUID"] and set(result) == {
        "taskType", "taskUUID", "imageUUID", "inputImageUUID", "imageBase64Data"}
    assert Image.open(io.BytesIO(base64.b64decode(result["imageBase64Data"]))).size == size
    (posted,) = [p for p in http_server.handler.posts if p[0] == "/hooks/client"]
    assert json.loads(posted[2]) == {"data": [result]}

    async def go() -> dict:
        async with AsyncRmbgClient(triton.grpc_url, fetch_policy=LOCAL) as client:
            return await client.remove_background({**rmbg2_example, "outputType": "dataURI"})

    uri = asyncio.run(go())["imageDataURI"]
    assert uri.startswith("data:image/png;base64,")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_async_client_deadline_is_client_side(triton, pairs, protocol):
    """Before: the HTTP client sent ``timeout`` as Triton's server-side queue timeout (microseconds)
    and had no deadline of its own, so a 0.3 s timeout waited for the whole IS-Net run."""
    image = max((p for p in pairs), key=lambda p: p.width * p.height).image.read_bytes()
    url = triton.grpc_url if protocol == "grpc" else triton.http_url.removeprefix("http://")

    async def go() -> tuple[float, float]:
        async with AsyncRmbgClient(url, protocol, timeout=0.3, retries=0) as client:
            started = time.monotonic()
            with pytest.raises(ServerUnavailableError):
                await client.remove(image)
            short = time.monotonic() - started
        async with AsyncRmbgClient(url, protocol, timeout=300) as client:
            started = time.monotonic()
            result = await client.remove(image, {"returnOnlyMask": True})
            assert result.info["width"] > 0
            return short, time.monotonic() - started

    short, full = asyncio.run(go())
    assert short < 1.5 and full > short, (short, full)


def test_async_client_retries_while_a_crashed_model_reloads(triton, model_repository, small_jpeg):
    """Before: AsyncRmbgClient never retried, so every request in the reload window failed."""

    async def go() -> list:
        async with AsyncRmbgClient(triton.grpc_url, retries=5, retry_backoff=0.5) as client:
            await client.remove(small_jpeg)
            restarts = len(triton.watchdog.restarts)
            pid = next(p for p, m in stub_processes(triton.process.pid, model_repository).items() if m == "isnet")
            os.kill(pid, signal.SIGKILL)
            results = await asyncio.gather(*(client.remove(small_jpeg, {"returnOnlyMask": True}) for _ in range(3)),
                                           return_exceptions=True)
            assert len(triton.watchdog.restarts) > restarts
            return results

    results = asyncio.run(go())
    assert all(not isinstance(r, Exception) for r in results), results
