"""The gateway red-team corpus: each finding of the security and reliability review, as an attack on
real processes (gateways, a Triton killed and restarted, two API keys, concurrent submits, a resolver
that rebinds), asserting the fixed behaviour. The README's "Limits and security" lists the same items.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sqlite3
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest

from rmbg_server.gateway.files.signing import signed_path
from rmbg_server.launcher import ServerConfig, TritonServer, free_port
from tests.harness import cluster
from tests.harness.cluster import WebhookReceiver
from tests.server.gateway.conftest import API_KEY, OTHER_KEY, GatewayProcess

pytestmark = [pytest.mark.triton, pytest.mark.slow]
A, B = {"Authorization": f"Bearer {API_KEY}"}, {"Authorization": f"Bearer {OTHER_KEY}"}


def task(image: str, **kw) -> dict:
    return {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "inputs": {"image": image},
            "outputType": "URL", **kw}


def data_uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def wait_jobs(gw: GatewayProcess, uuids: list[str], headers: dict | None = None, timeout: float = 180) -> dict:
    """getResponse until every task is done: {taskUUID: final item}."""
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(uuids) and time.monotonic() < deadline:
        pending = [u for u in uuids if u not in done]
        body = gw.post("/v1", [{"taskType": "getResponse", "taskUUID": u} for u in pending[:64]],
                       headers=headers).json()
        for item in body.get("data", []):
            if item.get("status") == "success":
                done[item["taskUUID"]] = item
        for item in body.get("errors", []):
            done[item["taskUUID"]] = item
        time.sleep(0.3)
    return done


# -- 1, 2: an outage ------------------------------------------------------------------------------

@pytest.fixture
def restartable_triton(tiny_repository, tmp_path):
    cfg = ServerConfig.on_free_ports(tiny_repository)
    server = TritonServer(cfg, log_file=tmp_path / "triton.log")
    server.start()
    yield server
    server.stop()


def test_queued_jobs_survive_a_triton_restart_and_sync_requests_get_503(restartable_triton, tmp_path, small_jpeg):
    """Triton is killed with 20 jobs queued and restarted seconds later: all 20 complete. While it is
    down, work that runs now answers 503 + Retry-After in each protocol's shape; queued work is accepted."""
    triton = restartable_triton
    gw = GatewayProcess(triton.grpc_url, tmp_path / "data", "--workers", "2", "--alias",
                        "fal-ai/bria/background/remove=isnet").start()
    try:
        sent = [task(data_uri(small_jpeg), deliveryMethod="async") for _ in range(20)]
        triton.process.kill()  # kill -9, with the jobs queued
        triton.process.wait()
        assert all(gw.post("/v1", t).status_code == 200 for t in sent)
        down = gw.post("/v1", task(data_uri(small_jpeg)))
        assert down.status_code == 503 and int(down.headers["Retry-After"]) >= 1
        assert down.json()["errors"][0]["code"] == "serviceUnavailable"
        fal = gw.post("/fal-ai/bria/background/remove", {"image_url": data_uri(small_jpeg)})
        assert fal.status_code == 503 and "Retry-After" in fal.headers and "detail" in fal.json()
        gmi = gw.post(cluster_gmi(), {"model": "isnet", "payload": {"image": data_uri(small_jpeg)}})
        assert gmi.status_code == 200 and gmi.json()["status"] == "queued"  # accepted: it waits the outage out
        time.sleep(3)
        triton.start()  # the same ports
        done = wait_jobs(gw, [t["taskUUID"] for t in sent])
        assert len(done) == 20 and all(item.get("status") == "success" for item in done.values()), done
    finally:
        gw.stop()


def cluster_gmi() -> str:
    return "/api/v1/ie/requestqueue/apikey/requests"


# -- 3, 4: tenants and public output URLs ---------------------------------------------------------

@pytest.fixture(scope="module")
def keys_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text(f"{API_KEY}\n{OTHER_KEY}\n")
    return path


@pytest.fixture(scope="module")
def two_keys(gateway_factory, keys_file):
    return gateway_factory("--api-key-file", str(keys_file), "--alias", "fal-ai/bria/background/remove=isnet")


def test_another_key_gets_404_for_all_of_a_keys_work(two_keys, small_jpeg):
    gw = two_keys
    image = data_uri(small_jpeg)
    queued = gw.post("/v1", task(image, deliveryMethod="async"), headers=A).json()["data"][0]["taskUUID"]
    fal = gw.post("/queue/fal-ai/bria/background/remove", {"image_url": image}, headers=A).json()
    gmi = gw.post(cluster_gmi(), {"model": "isnet", "payload": {"image": image}}, headers=A).json()
    sync = gw.post("/v1", task(image), headers=A).json()["data"][0]
    assert wait_jobs(gw, [queued], headers=A)[queued]["status"] == "success"

    # B: every id of A's answers as an id that does not exist
    item = gw.post("/v1", {"taskType": "getResponse", "taskUUID": queued}, headers=B).json()["errors"][0]
    missing = gw.post("/v1", {"taskType": "getResponse", "taskUUID": str(uuid.uuid4())}, headers=B).json()
    assert item["code"] == missing["errors"][0]["code"] == "taskNotFound"
    for method, url in (("GET", fal["status_url"]), ("GET", fal["response_url"]), ("PUT", fal["cancel_url"]),
                        ("GET", f"{cluster_gmi()}/{gmi['request_id']}")):
        assert gw.request(method, url, headers=B).status_code == 404, url
        assert gw.request(method, url, headers=A).status_code in (200, 202, 400), url  # A still sees its own
    reuse = gw.post("/v1", task(sync["imageUUID"]), headers=B).json()["errors"][0]
    assert (reuse["code"], reuse["parameter"]) == ("imageNotFound", "inputs.image")
    assert gw.post("/v1", task(sync["imageUUID"], outputType="base64Data"), headers=A).status_code == 200

    # 4: the output URL is a capability: no key needed, a forged signature or name is nothing
    assert httpx.get(sync["imageURL"]).status_code == 200
    forged = sync["imageURL"].rsplit("/", 2)
    assert httpx.get(f"{forged[0]}/{'0' * 64}/{forged[2]}").status_code == 404


def test_an_output_url_dies_at_its_expiry(gateway, small_jpeg):
    result = gateway.post("/v1", task(data_uri(small_jpeg), ttl=60)).json()["data"][0]
    expires, _, name = result["imageURL"].split("/files/", 1)[1].split("/")
    assert time.time() + 55 <= int(expires) <= time.time() + 65  # the URL lives as long as the file
    key = (gateway.data_dir / "files" / ".signing-key").read_bytes()
    assert result["imageURL"].endswith(signed_path(key, name, int(expires)))
    past = signed_path(key, name, time.time() - 1)  # signed right, expired
    assert gateway.get(past).status_code == 404 and gateway.get(result["imageURL"]).status_code == 200


def test_tenants_hold_across_replicas_sharing_redis(triton, redis_server, tmp_path, small_jpeg, keys_file):
    keys = keys_file
    g1, g2 = (GatewayProcess(triton.grpc_url, tmp_path / f"d{i}", "--redis", redis_server.url, "--api-key-file",
                             str(keys)).start() for i in (1, 2))
    try:
        done = g1.post("/v1", task(data_uri(small_jpeg), deliveryMethod="async"), headers=A).json()["data"][0]
        uuid_ = done["taskUUID"]
        assert wait_jobs(g2, [uuid_], headers=A)[uuid_]["status"] == "success"  # A, on the other replica
        other = g2.post("/v1", {"taskType": "getResponse", "taskUUID": uuid_}, headers=B).json()["errors"][0]
        assert other["code"] == "taskNotFound"
        sync = g1.post("/v1", task(data_uri(small_jpeg)), headers=A).json()["data"][0]
        assert httpx.get(sync["imageURL"].replace(g1.url, g2.url)).status_code == 200  # one key for both
    finally:
        g1.stop()
        g2.stop()


# -- 5, 6: bounded storage and admission ----------------------------------------------------------

def test_queued_requests_are_checked_before_they_are_stored_and_kept_small(gateway, small_jpeg):
    db = gateway.data_dir / "jobs.sqlite3"
    not_an_image = base64.b64encode(b"\x00" * 600_000).decode()
    for body in (task(not_an_image, deliveryMethod="async"), task("!!not base64!!" * 1000, deliveryMethod="async")):
        refused = gateway.post("/v1", body).json()["errors"][0]
        assert (refused["code"], refused["parameter"]) == ("invalidImage", "inputs.image")
    gmi = gateway.post(cluster_gmi(), {"model": "isnet", "payload": {"image": not_an_image}})
    assert gmi.status_code == 400 and gmi.json()["error"]["code"] == "invalidImage"
    sent = task(data_uri(small_jpeg), deliveryMethod="async")
    assert gateway.post("/v1", sent).status_code == 200
    with sqlite3.connect(db) as conn:
        (request,) = conn.execute("SELECT request FROM jobs WHERE id = ?", (sent["taskUUID"],)).fetchone()
    assert len(request) < 2000 < len(sent["inputs"]["image"])  # the image is a stored file, not the row
    assert wait_jobs(gateway, [sent["taskUUID"]])[sent["taskUUID"]]["status"] == "success"


@pytest.mark.parametrize("ttl", [2**63, 10**400, 8 * 86400])
def test_ttl_is_capped(gateway, small_jpeg, ttl):
    for delivery in ("sync", "async"):
        raw = json.dumps(task(data_uri(small_jpeg), deliveryMethod=delivery, ttl=0))
        raw = raw.replace('"ttl": 0', f'"ttl": {ttl}')  # 10**400 as JSON text: no Python float in between
        response = gateway.request("POST", "/v1", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["parameter"] == "ttl"


def test_a_tenants_quota_answers_429(gateway_factory, small_jpeg):
    gw = gateway_factory("--quota-mb", "1")
    answers = []
    while len(answers) < 40 and (not answers or answers[-1].status_code == 200):
        answers.append(gw.post("/v1", task(data_uri(small_jpeg))))
    ok, over = answers[:-1], answers[-1]
    assert ok and all(a.status_code == 200 for a in ok)
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
    assert over.json()["errors"][0]["code"] == "quotaExceeded"
    sizes = [len(httpx.get(a.json()["data"][0]["imageURL"]).content) for a in ok]
    assert sum(sizes) <= 1024 * 1024 < sum(sizes) + max(sizes) * 2  # it stopped at the quota, not before


def test_max_queued_is_one_check_and_insert(tmp_path, small_jpeg):
    """--max-queued 5, one worker stuck on an outage: of 30 concurrent submits exactly 5 are accepted."""
    dead = f"127.0.0.1:{free_port()}"
    gw = GatewayProcess(dead, tmp_path / "data", "--max-queued", "5", "--workers", "1").start(wait_for="/healthz")
    try:
        first = task(data_uri(small_jpeg), deliveryMethod="async")
        assert gw.post("/v1", first).status_code == 200  # the worker claims it and waits for Triton
        deadline = time.monotonic() + 30
        while gw.post("/v1", {"taskType": "getResponse", "taskUUID": first["taskUUID"]}).json()["data"][0][
                "status"] != "processing" and time.monotonic() < deadline:
            time.sleep(0.1)

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=60) as client:
                answers = await asyncio.gather(*(client.post(f"{gw.url}/v1", json=task(
                    data_uri(small_jpeg), deliveryMethod="async")) for _ in range(30)))
            return [a.status_code for a in answers]

        codes = asyncio.run(burst())
        assert codes.count(200) == 5 and codes.count(429) == 25, codes
    finally:
        gw.stop()


# -- 7: webhooks and uploads connect to the checked address ---------------------------------------

REBINDING = textwrap.dedent('''
    # A resolver that rebinds: "rebind.test" answers 127.0.0.2, then 127.0.0.3, alternately; every
    # other name resolves as usual. Loaded by the gateway process under test (sitecustomize).
    import itertools, socket, sys
    sys.modules["uvloop"] = None  # the asyncio loop resolves through socket.getaddrinfo
    _answers, _real = itertools.cycle(["127.0.0.2", "127.0.0.3"]), socket.getaddrinfo
    def getaddrinfo(host, port, *args, **kwargs):
        if host in ("rebind.test", b"rebind.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(_answers), int(port or 80)))]
        return _real(host, port, *args, **kwargs)
    socket.getaddrinfo = getaddrinfo
''')


def test_webhooks_and_uploads_connect_to_the_address_that_was_checked(triton, tmp_path, small_jpeg):
    """Only 127.0.0.2 is opened for callbacks; the name answers .2 and .3 in turn. A delivery whose check
    saw .2 must connect to .2 (before, a second lookup at connect time reached .3); one whose check saw
    .3 is refused. Nothing may ever reach .3."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(REBINDING)
    port = free_port("127.0.0.2")
    good, evil = WebhookReceiver(host="127.0.0.2", port=port), WebhookReceiver(host="127.0.0.3", port=port)
    gw = cluster.GatewayProcess([triton.grpc_url], tmp_path / "data", args=[
        "--allow-callbacks-to", "127.0.0.2/32"], env={"PYTHONPATH": str(tmp_path / "site")},
        log_file=tmp_path / "gw.log").start()
    try:
        hook = f"http://rebind.test:{port}/hooks/rmbg"
        for _ in range(4):
            r = httpx.post(f"{gw.url}/v1", json=task(data_uri(small_jpeg), outputType="base64Data",
                                                        webhookURL=hook), timeout=120)
            assert r.status_code == 200, r.text
        time.sleep(3)  # deliveries run in the background
        assert evil.deliveries == []
        assert len(good.deliveries) == 2 and all(d.headers["Host"] == f"rebind.test:{port}" for d in good.deliveries)
        assert gw.log_text().count("a loopback address") >= 2  # the others were refused at their check
    finally:
        gw.stop()
        good.close()
        evil.close()


def test_fetch_flags_do_not_open_callbacks_and_ipv6_disguises_are_refused(triton, tmp_path, small_jpeg):
    receiver = WebhookReceiver()
    gw = cluster.GatewayProcess([triton.grpc_url], tmp_path / "data", args=["--allow-fetch-from", "127.0.0.0/8"],
                                log_file=tmp_path / "gw.log").start()
    try:
        for hook in (receiver.url, f"http://[2002:7f00:1::]:{receiver.port}/x",
                     f"http://[::ffff:127.0.0.1]:{receiver.port}/x", f"http://[64:ff9b::7f00:1]:{receiver.port}/x"):
            r = httpx.post(f"{gw.url}/v1", json=task(data_uri(small_jpeg), outputType="base64Data",
                                                        deliveryMethod="async", webhookURL=hook), timeout=60)
            assert r.status_code == 200, r.text  # the task runs; its webhook is refused
        time.sleep(4)
        assert receiver.deliveries == []
        upload = httpx.post(f"{gw.url}/v1", json=task(data_uri(small_jpeg), uploadEndpoint=receiver.url), timeout=60)
        error = upload.json()["errors"][0]
        assert (error["code"], error["parameter"]) == ("uploadFailed", "uploadEndpoint")
        assert "--allow-callbacks-to" in error["message"]
    finally:
        gw.stop()
        receiver.close()


# -- 8: a keyless gateway cannot be driven by a web page ------------------------------------------

@pytest.mark.parametrize(("headers", "status", "code"), [
    ({"Content-Type": "text/plain"}, 415, "unsupportedMediaType"),
    ({"Content-Type": "application/json", "Origin": "https://evil.example"}, 403, "forbiddenOrigin"),
    ({"Content-Type": "application/json", "Origin": "null"}, 403, "forbiddenOrigin"),
    ({"Content-Type": "application/json", "Host": "evil.example"}, 403, "forbiddenHost"),
    ({"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}, 403, "forbiddenOrigin"),
])
def test_a_page_cannot_drive_a_keyless_gateway(gateway, small_jpeg, headers, status, code):
    body = json.dumps(task(data_uri(small_jpeg), outputType="base64Data"))
    response = gateway.request("POST", "/v1", content=body, headers=headers)
    assert response.status_code == status and response.json()["errors"][0]["code"] == code


def test_its_own_page_still_can(gateway, small_jpeg):
    own = {"Content-Type": "application/json", "Origin": gateway.url, "Host": gateway.url.split("//")[1]}
    for host in (own["Host"], "localhost"):
        body = json.dumps(task(data_uri(small_jpeg), outputType="base64Data"))
        assert gateway.request("POST", "/v1", content=body, headers={**own, "Host": host}).status_code == 200


# -- 11: smaller items ----------------------------------------------------------------------------

def test_a_lone_surrogate_and_invalid_utf8_are_answered_not_500(gateway):
    surrogate = b'{"taskType": "removeBackground", "taskUUID": "\\ud800", "inputs": {"image": "x"}}'
    r = gateway.request("POST", "/v1", content=surrogate, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["errors"][0]["parameter"] == "taskUUID"
    r = gateway.request("POST", "/v1", content=b'{"taskType": "\xff\xfe"}',
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not UTF-8" in r.json()["errors"][0]["message"]


def test_a_path_answers_alike_whether_the_file_exists(gateway):
    answers = {json.dumps(gateway.post("/v1", {**task(path), "taskUUID": "0b5b3a4e-8c7e-4b38-9b7a-1a2b3c4d5e6f"})
                          .json()["errors"][0]["message"]) for path in ("/etc", "/etx")}
    assert len(answers) == 1


def test_a_client_leaving_mid_body_is_no_traceback(gateway):
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n{\"taskType\": ")
    time.sleep(1.5)
    assert "Traceback" not in gateway.log_text() and "Exception in ASGI" not in gateway.log_text()
