"""Several Triton endpoints: balanced across healthy ones, and a request whose endpoint goes away
before it produced a result is retried on another (a TCP relay in front of the real server is cut)."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid

import pytest

from rmbg_server.gateway.settings import split_targets
from rmbg_server.gateway.triton import TritonPool
from rmbg_server.launcher import free_port

pytestmark = pytest.mark.triton


class Relay:
    """A TCP relay to Triton's gRPC port that can vanish like a dead server (all connections reset)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.bytes_up = 0
        self.gone = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.gone:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(65536):
                if up:
                    self.bytes_up += len(data)
                dst.sendall(data)
        except OSError:
            pass

    def vanish(self) -> None:
        self.gone = True
        self.listener.close()
        for s in self.sockets:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            s.close()


def test_targets():
    assert split_targets("a:1,b:2") == ("a:1", "b:2") and split_targets(["a:1", " b:2 ,"]) == ("a:1", "b:2")
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_targets("a")


def test_a_name_expands_to_its_addresses_and_unhealthy_endpoints_are_skipped(triton, gateway_factory, images,
                                                                          http_server):
    port = triton.grpc_url.rsplit(":", 1)[1]
    dead = free_port()
    gw = gateway_factory("--triton", f"localhost:{port},127.0.0.1:{dead}")
    ready = gw.get("/readyz").json()
    assert ready["endpoints"] == {f"127.0.0.1:{port}": "healthy", f"127.0.0.1:{dead}": "unhealthy"}
    for _ in range(3):
        sent = {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "model": "bria:2@1",
                "outputType": "base64Data", "inputs": {"image": f"{http_server.base}/source_image.jpg"}}
        assert gw.post("/v1", sent).status_code == 200


def test_requests_on_a_vanished_endpoint_are_retried_on_another(triton, gateway_factory, small_jpeg):
    relay = Relay(triton.grpc_url)

    async def go() -> tuple[list, TritonPool]:
        pool = TritonPool([relay.address, triton.grpc_url], check_interval_s=0.5)
        await pool.start()
        assert len(pool.healthy()) == 2
        calls = [asyncio.create_task(pool.remove("isnet", small_jpeg, {"returnOnlyMask": True})) for _ in range(4)]
        await asyncio.sleep(0.3)  # all sent, split over both endpoints, none finished (IS-Net takes seconds)
        assert relay.bytes_up > len(small_jpeg), "no request went through the relay"
        relay.vanish()
        results = await asyncio.gather(*calls, return_exceptions=True)
        await pool.stop()
        return results, pool

    results, pool = asyncio.run(go())
    assert all(not isinstance(r, Exception) for r in results), results
    assert {r.info["width"] for r in results} == {results[0].info["width"]}


def test_balanced_over_healthy_endpoints(triton, small_jpeg):
    relay = Relay(triton.grpc_url)

    async def go() -> None:
        pool = TritonPool([relay.address, triton.grpc_url])
        await pool.start()
        before = relay.bytes_up
        await asyncio.gather(*(pool.remove("birefnet", small_jpeg, {"returnOnlyMask": True}) for _ in range(6)))
        await pool.stop()
        assert 3 * len(small_jpeg) < relay.bytes_up - before < 4 * len(small_jpeg)  # 3 of 6 went through it

    asyncio.run(go())
    relay.vanish()
