"""Real gateway processes (``rmbg gateway``) on free ports against the session's Triton server.

``GatewayProcess`` is the fixture other gateway tests build on (kill -9, replicas through Redis):
it runs the console script as a user would, waits for ``/readyz``, and can be killed or restarted
on the same port and data directory.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rmbg_server.launcher import free_port
from tests.conftest import SHARED

RMBG = str(Path(sys.executable).parent / "rmbg")
WEBHOOK_SECRET = "test-webhook-secret-0123456789"
COST = 0.0013
API_KEY = "test-key-AAAAAAAAAAAAAAAAAAAAAAAA"
OTHER_KEY = "test-key-BBBBBBBBBBBBBBBBBBBBBBBB"


class GatewayProcess:
    """One ``rmbg gateway`` subprocess; ``kill()`` is kill -9, ``start()`` again reuses port and data."""

    def __init__(self, triton_url: str, data_dir: Path, *args: str, port: int | None = None,
                 env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.args = ["--port", str(self.port), "--triton", triton_url, "--data-dir", str(data_dir),
                     "--allow-fetch-from", "127.0.0.0/8", *args]
        self.env = {**os.environ, **(env or {})}
        self.log = log or data_dir.parent / f"gateway-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> GatewayProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([RMBG, "gateway", *self.args], stdout=out, stderr=subprocess.STDOUT,
                                            env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rmbg gateway exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"rmbg gateway not ready after {timeout:.0f} s:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("http") else f"{self.url}{path}"
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
