"""One test per kind of bad input: the hosted APIs' error shape, naming the parameter and the taskUUID,
and the gateway keeps serving (each case is followed by a good task)."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.triton
SHAPE = {"code", "message", "parameter", "taskType", "taskUUID"}


def bad(gateway, http_server, change: dict | None = None, image: str | None = None, drop: str | None = None):
    sent = {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "model": "bria:2@1",
            "inputs": {"image": image or f"{http_server.base}/source_image.jpg"}, **(change or {})}
    if drop:
        del sent[drop]
    response = gateway.post("/v1", sent)
    assert response.status_code == 400, response.text
    (error,) = response.json()["errors"]
    assert set(error) == SHAPE and error["taskType"] == "removeBackground"
    assert error["taskUUID"] == sent.get("taskUUID")
    assert error["message"].startswith(f"{error['parameter']}: ") if error["parameter"] else error["message"]
    return error


@pytest.fixture(autouse=True)
def still_serving(gateway, images, http_server):
    yield
    ok = gateway.post("/v1", {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "model": "bria:2@1",
                              "outputType": "base64Data", "inputs": {"image": f"{http_server.base}/source_image.jpg"}})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(("image", "code"), [("http://", "invalidImageURL"), ("http:///nohost.jpg", "invalidImageURL"),
                                             ("ftp://example.com/x.jpg", "invalidImage"),
                                             ("{base}/missing.jpg", "imageFetchFailed")])
def test_bad_url(gateway, http_server, image, code):
    error = bad(gateway, http_server, image=image.format(base=http_server.base))
    assert (error["parameter"], error["code"]) == ("inputs.image", code)


def test_non_image(gateway, http_server):
    error = bad(gateway, http_server, image=f"{http_server.base}/not-an-image.txt")
    assert (error["parameter"], error["code"]) == ("inputs.image", "invalidImage")
    assert "not a recognised image" in error["message"] and "hunter2" not in error["message"]


def test_unknown_setting(gateway, http_server):
    error = bad(gateway, http_server, {"settings": {"alphaMatte": True}})
    assert (error["parameter"], error["code"]) == ("settings.alphaMatte", "unsupportedParameter")
    error = bad(gateway, http_server, {"colour": "red"})
    assert (error["parameter"], error["code"]) == ("colour", "unsupportedParameter")


@pytest.mark.parametrize(("change", "parameter"), [
    ({"settings": {"alphaMattingErodeSize": 0}}, "settings.alphaMattingErodeSize"),
    ({"settings": {"rgba": [255, 255, 255, 256]}}, "settings.rgba"),
    ({"outputQuality": 100}, "outputQuality"), ({"ttl": 59}, "ttl"), ({"outputType": "file"}, "outputType"),
])
def test_value_out_of_range(gateway, http_server, change, parameter):
    error = bad(gateway, http_server, change)
    assert (error["parameter"], error["code"]) == (parameter, "invalidParameter")


def test_missing_task_uuid(gateway, http_server):
    error = bad(gateway, http_server, drop="taskUUID")
    assert (error["parameter"], error["code"], error["taskUUID"]) == ("taskUUID", "missingParameter", None)
    error = bad(gateway, http_server, {"taskUUID": "not-a-uuid"})
    assert (error["parameter"], error["code"]) == ("taskUUID", "invalidParameter")


def test_reused_task_uuid(gateway, http_server, images):
    sent = {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "model": "bria:2@1",
            "outputType": "base64Data", "inputs": {"image": f"{http_server.base}/source_image.jpg"}}
    assert gateway.post("/v1", sent).status_code == 200
    error = bad(gateway, http_server, {"taskUUID": sent["taskUUID"]})
    assert (error["parameter"], error["code"], error["taskUUID"]) == ("taskUUID", "conflictTaskUUID",
                                                                      sent["taskUUID"])
    error = bad(gateway, http_server, {"taskUUID": sent["taskUUID"].upper()})  # the same UUID, upper case
    assert error["code"] == "conflictTaskUUID"


@pytest.mark.parametrize("first_try", [{"settings": {"alphaMatte": True}}, {"outputQuality": 100},
                                       {"inputs": {"image": "http://10.0.0.1/x.jpg"}},
                                       {"inputs": {"image": "{base}/missing.jpg"}}])
def test_a_refused_task_keeps_its_uuid(gateway, http_server, images, first_try):
    """Only a task that produced a result spends its UUID: fixing the mistake and resending works."""
    task = {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "model": "bria:2@1",
            "outputType": "base64Data", "inputs": {"image": f"{http_server.base}/source_image.jpg"}}
    change = {k: ({"image": v["image"].format(base=http_server.base)} if k == "inputs" else v)
              for k, v in first_try.items()}
    assert gateway.post("/v1", {**task, **change}).status_code == 400
    fixed = gateway.post("/v1", task)
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["data"][0]["taskUUID"] == task["taskUUID"]


@pytest.mark.parametrize("path", ["/etc/passwd", "/proc/self/environ", "~/.bashrc", "file:///etc/passwd"])
def test_local_path(gateway, http_server, path):
    error = bad(gateway, http_server, image=path)
    assert error["parameter"] == "inputs.image"
    assert "root:" not in error["message"] and "PATH=" not in error["message"]


@pytest.mark.parametrize("image", ["http://10.0.0.1/x.jpg", "http://169.254.169.254/latest/meta-data/",
                                   "http://[::1]:9/x.jpg", "http://192.168.0.1/x.jpg"])
def test_private_address(gateway, http_server, image):
    """127.0.0.0/8 is allowed in these tests (--allow-fetch-from); every other non-public range is not."""
    error = bad(gateway, http_server, image=image)
    assert (error["parameter"], error["code"]) == ("inputs.image", "forbiddenAddress")


def test_redirect_to_a_private_address(gateway, http_server):
    http_server.handler.redirects["/to-metadata"] = "http://169.254.169.254/latest/meta-data/"
    error = bad(gateway, http_server, image=f"{http_server.base}/to-metadata")
    assert (error["parameter"], error["code"]) == ("inputs.image", "forbiddenAddress")


def test_oversized_body(gateway):
    """The main gateway runs with --max-body-mb 8."""
    body = b'{"taskType": "removeBackground", "inputs": {"image": "' + b"A" * (9 * 1024 * 1024) + b'"}}'
    response = gateway.request("POST", "/v1", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    (error,) = response.json()["errors"]
    assert set(error) == SHAPE and (error["parameter"], error["code"]) == ("body", "payloadTooLarge")


def test_oversized_or_broken_inline_image(gateway, http_server):
    """Inline base64 is refused over the image cap (1 MB here) before it is decoded."""
    error = bad(gateway, http_server, image="data:image/png;base64," + "A" * (2 * 1024 * 1024))
    assert (error["parameter"], error["code"]) == ("inputs.image", "invalidImage")
    assert "over the 1,048,576-byte limit" in error["message"]
    error = bad(gateway, http_server, image="data:image/png;base64,!!!!")
    assert (error["parameter"], error["code"]) == ("inputs.image", "invalidImage")


def test_invalid_json_and_unknown_model(gateway, http_server):
    response = gateway.request("POST", "/v1", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "invalidJSON"
    error = bad(gateway, http_server, {"model": "civitai:4201@130072"})
    assert (error["parameter"], error["code"]) == ("model", "unsupportedModel")
    assert "bria:2@1" in error["message"]
