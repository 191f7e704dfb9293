"""Real gateway processes (``rmbg gateway``) on free ports against the session's Triton server.

``GatewayProcess`` is the fixture other gateway tests build on (kill -9, replicas through Redis):
it runs the console script as a user would, waits for ``/readyz``, and can be killed or restarted
on the same port and data directory.
"""

from __future__ import annotations

import io
import json
import re
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from rmbg_server.launcher import free_port
from tests.conftest import SHARED
from tests.harness import cluster

RMBG = cluster.rmbg_command()[0]  # the console script, run as a user would
WEBHOOK_SECRET = "test-webhook-secret-0123456789"
COST = 0.0013
API_KEY = "test-key-AAAAAAAAAAAAAAAAAAAAAAAA"
OTHER_KEY = "test-key-BBBBBBBBBBBBBBBBBBBBBBBB"


class GatewayProcess(cluster.GatewayProcess):
    """One ``rmbg gateway`` subprocess (``kill()`` is kill -9, ``start()`` again reuses port and data),
    with HTTP helpers for the tests."""

    def __init__(self, triton_url: str, data_dir: Path, *args: str, port: int | None = None,
                 env: dict[str, str] | None = None, log: Path | None = None, ca: Path | None = None) -> None:
        port = port or free_port()
        super().__init__([triton_url], data_dir, port=port,
                         args=["--allow-fetch-from", "127.0.0.0/8", "--allow-callbacks-to", "127.0.0.0/8", *args],
                         env=env, log_file=log or data_dir.parent / f"gateway-{port}.log", ca=ca)

    def start(self, timeout: float = 90.0, *, wait_for: str = "/readyz") -> GatewayProcess:
        super().start(timeout, wait_for=wait_for)
        return self

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("http") else f"{self.url}{path}"
        if self.ca:
            kwargs.setdefault("verify", ssl.create_default_context(cafile=str(self.ca)))
        return httpx.request(method, url, timeout=kwargs.pop("timeout", 180), **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, json=body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def wait_for(self, path: str, done: Callable[[httpx.Response], bool], timeout: float = 120.0,
                 **kwargs: Any) -> httpx.Response:
        """Poll ``GET path`` until ``done(response)``."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(path, **kwargs)
            if done(response) or time.monotonic() > deadline:
                return response
            time.sleep(0.2)


@pytest.fixture(scope="session")
def gateway_factory(triton, tmp_path_factory) -> Iterator[Callable[..., GatewayProcess]]:
    """Start extra gateways: ``gateway_factory("--api-key", KEY, ...)``; all are stopped at the end."""
    started: list[GatewayProcess] = []

    def make(*args: str, start: bool = True, **kwargs: Any) -> GatewayProcess:
        gw = GatewayProcess(triton.grpc_url, tmp_path_factory.mktemp("gateway") / "data", *args, **kwargs)
        started.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture(scope="session")
def gateway(gateway_factory) -> GatewayProcess:
    """The main gateway: no API keys (loopback), signed webhooks, a cost, 8 MB bodies and 1 MB images."""
    return gateway_factory("--webhook-secret", WEBHOOK_SECRET, "--cost-per-image", str(COST), "--max-body-mb", "8",
                           "--max-image-mb", "1")


def hosted_examples(number: str, marker: str) -> list[dict[str, Any]]:
    """The JSON request examples of a hosted-API document, verbatim, found by a key they start with."""
    text = next((SHARED / "hosted-apis").glob(f"{number}_*.txt")).read_text()
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r"\{\s*" + re.escape(marker), text):
        try:
            found.append(decoder.raw_decode(text[match.start():])[0])
        except json.JSONDecodeError:
            continue
    return found


def opened(data: bytes) -> Image.Image:
    """An answered image, decoded in full (a truncated body fails here, not in a later assertion)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture(scope="session")
def person_photo(pairs) -> tuple[bytes, tuple[int, int]]:
    """A real 600 x 450 photo (over remove.bg's 0.25 MP preview size) and its size."""
    pair = next(p for p in pairs if p.id == "grabcut_person1")
    return pair.image.read_bytes(), (pair.width, pair.height)


@pytest.fixture(scope="session")
def sdk_photo(http_server, small_jpeg) -> tuple[str, tuple[int, int]]:
    """A real photo on the local image server for the SDKs to name: (its URL, its size)."""
    http_server.handler.files["/sdk/photo.jpg"] = small_jpeg
    return f"{http_server.base}/sdk/photo.jpg", Image.open(io.BytesIO(small_jpeg)).size


def relocate(url: str, base: str) -> str:
    """The documented input URL with its origin swapped for the local image server (the path is kept)."""
    return base + "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.fixture(scope="session")
def images(http_server, pairs) -> dict[str, bytes]:
    """Serve small real photos at every input path the hosted documents use, plus a text file."""
    photos = [p.image.read_bytes() for p in pairs if p.id.startswith("ecssd")][:4]
    served: dict[str, bytes] = {}
    for number, marker in (("001", '"taskType"'), ("003", '"taskType"'), ("002", '"image_url"')):
        for example in hosted_examples(number, marker):
            for key in ("image_url", "ref_image_url"):
                if example.get(key):
                    served["/" + example[key].split("://", 1)[1].split("/", 1)[1]] = photos[len(served) % 4]
            if "inputs" in example:
                served["/" + example["inputs"]["image"].split("://", 1)[1].split("/", 1)[1]] = photos[len(served) % 4]
    served["/source_image.jpg"] = photos[0]  # GMI's example: https://example.com/source_image.jpg
    served["/not-an-image.txt"] = b"SECRET_TOKEN=hunter2\nthis is not an image\n"
    http_server.handler.files.update(served)
    return served


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    """A throwaway CA and a server certificate for 127.0.0.1, localhost, gw.test and queue.gw.test (made
    with openssl, as the README shows): the official SDKs speak TLS to the gateway trusting only it."""
    from tests.harness.tls import make_test_ca

    return make_test_ca(tmp_path_factory.mktemp("test-ca"))
