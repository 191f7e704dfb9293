"""The hosted-API task schema shared by the client library and the gateway (rmbg_client.tasks)."""

import json
import re
from pathlib import Path

import pytest

from rmbg_client import RmbgClient
from rmbg_client.client import InvalidInputError
from rmbg_client.tasks import MODEL_ALIASES, RemoveBackgroundTask, TaskError, parse_task, resolve_model
from tests.conftest import SHARED

BASE = {"taskType": "removeBackground", "taskUUID": "0b5b3a4e-8c7e-4b38-9b7a-1a2b3c4d5e6f",
        "inputs": {"image": "https://example.invalid/x.jpg"}}


def hosted_examples(number: str) -> list[dict]:
    """The JSON task examples of a hosted-API document (001, 003), verbatim."""
    text = next((SHARED / "hosted-apis").glob(f"{number}_*.txt")).read_text()
    found = []
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{\s*\"taskType\": \"removeBackground\"", text):
        found.append(decoder.raw_decode(text[match.start():])[0])
    return found


def test_task_fields_map_to_options():
    task = parse_task({**BASE, "settings": {"rgba": [255, 255, 255, 0], "postProcessMask": True},
                       "outputFormat": "WEBP", "outputQuality": 80, "outputType": "dataURI"})
    assert isinstance(task, RemoveBackgroundTask) and task.image == "https://example.invalid/x.jpg"
    assert task.options() == {"rgba": [255, 255, 255, 0], "postProcessMask": True, "outputFormat": "WEBP",
                              "outputQuality": 80}
    assert task.output_type(hosts_files=False) == "dataURI"


@pytest.mark.parametrize("number", ["001", "003"])
def test_the_hosted_examples_parse_verbatim(number):
    examples = hosted_examples(number)
    assert len(examples) == {"001": 2, "003": 3}[number]
    for example in examples:
        task = parse_task(example)
        options = task.options()
        assert resolve_model(task.model) == {"001": "isnet", "003": "birefnet"}[number]
        assert options["outputFormat"] == "PNG"  # DESIGN.md section 3: PNG by default
        if number == "003":
            assert options["preserveAlpha"] is False
        else:
            assert options["alphaMatting"] is True and options["rgba"] == [255, 255, 255, 0]
        # the hosted default outputType is URL: the gateway hosts it, the client library falls back to base64
        assert task.output_type(hosts_files=True) == "URL"
        assert task.output_type(hosts_files=False) == "base64Data"


def test_platform_fields_are_accepted():
    task = parse_task({**BASE, "webhookURL": "https://hooks.example.invalid/rmbg", "deliveryMethod": "async",
                       "ttl": 3600, "includeCost": True, "uploadEndpoint": "https://bucket.example.invalid/o.png?s=1",
                       "providerSettings": {"bria": {"preserveAlpha": True}}, "model": "briaai/RMBG-2.0"})
    assert (task.deliveryMethod, task.ttl, task.includeCost) == ("async", 3600, True)
    assert task.options()["preserveAlpha"] is True and task.output_type(hosts_files=False) == "URL"


@pytest.mark.parametrize(
    ("change", "parameter", "code"),
    [
        ({"taskType": "imageInference"}, "taskType", "invalidParameter"),
        ({"taskUUID": ""}, "taskUUID", "invalidParameter"),
        ({"taskUUID": "0b5b3a4e-8c7e-1b38-9b7a-1a2b3c4d5e6f"}, "taskUUID", "invalidParameter"),  # v1, not v4
        ({"inputs": {}}, "inputs.image", "missingParameter"),
        ({"outputType": "file"}, "outputType", "invalidParameter"),
        ({"outputType": "URL"}, "uploadEndpoint", "invalidParameter"),
        ({"settings": [1]}, "settings", "invalidParameter"),
        ({"colour": 1}, "colour", "unsupportedParameter"),
        ({"settings": {"alphaMattingErodeSize": 0}}, "settings.alphaMattingErodeSize", "invalidParameter"),
        ({"settings": {"alphaMatte": True}}, "settings.alphaMatte", "unsupportedParameter"),
        ({"outputQuality": 100}, "outputQuality", "invalidParameter"),
        ({"outputQuality": "95"}, "outputQuality", "invalidParameter"),
        ({"ttl": 59}, "ttl", "invalidParameter"),
        ({"deliveryMethod": "later"}, "deliveryMethod", "invalidParameter"),
        ({"uploadEndpoint": "ftp://bucket/x.png", "outputType": "URL"}, "uploadEndpoint", "invalidParameter"),
        ({"providerSettings": {"bria": {"preserveAlpha": "yes"}}}, "providerSettings.bria.preserveAlpha",
         "invalidParameter"),
        ({"providerSettings": {"bria": {"seed": 1}}}, "providerSettings.bria.seed", "unsupportedParameter"),
    ],
)
def test_bad_tasks_name_the_parameter_and_the_task(change, parameter, code):
    with pytest.raises(TaskError) as info:
        task = parse_task({**BASE, **change})
        task.options()
        task.output_type(hosts_files=False)
    error = info.value
    assert isinstance(error, InvalidInputError)
    assert (error.parameter, error.code) == (parameter, code), error.shape()
    assert error.shape()["taskUUID"] == ({**BASE, **change}["taskUUID"] or None)
    assert error.shape()["taskType"] == {**BASE, **change}["taskType"]
    assert parameter.split(".")[-1] in error.shape()["message"]


def test_missing_task_uuid():
    task = dict(BASE)
    del task["taskUUID"]
    with pytest.raises(TaskError) as info:
        parse_task(task)
    assert info.value.shape() == {"code": "missingParameter", "message": "taskUUID: is required",
                                  "parameter": "taskUUID", "taskType": "removeBackground", "taskUUID": None}


def test_aliases():
    assert resolve_model("runware:109@1") == resolve_model("briaai/RMBG-1.4") == "isnet"
    for name in ("bria:2@1", "briaai/RMBG-2.0", "bria-image-remove-background", "fal-ai/bria/background/remove",
                 "fal-ai/bria/background/replace", "birefnet"):
        assert MODEL_ALIASES[name] == "birefnet"
    with pytest.raises(TaskError, match="unknown model 'sam'"):
        resolve_model("sam")


def test_the_client_never_reads_a_local_file_named_in_a_task(tmp_path):
    """Issue 10 item 3: before, /proc/self/environ or ~/.bashrc in inputs.image was read and sent."""
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET_TOKEN=hunter2\n")
    client = RmbgClient("127.0.0.1:9", retries=0, timeout=2)  # nothing listens: the task must fail before
    for path in (str(secret), "/proc/self/environ", "~/.bashrc"):
        with pytest.raises(InvalidInputError, match="local file paths are never read") as info:
            client.remove_background({**BASE, "outputType": "base64Data", "inputs": {"image": path}})
        assert "hunter2" not in str(info.value)
    assert Path(secret).read_text() == "SECRET_TOKEN=hunter2\n"


def test_the_client_needs_an_upload_endpoint_for_url_outputs():
    client = RmbgClient("127.0.0.1:9", retries=0, timeout=2)
    with pytest.raises(TaskError, match="does not host files") as info:
        client.remove_background({**BASE, "outputType": "URL"})
    assert info.value.parameter == "uploadEndpoint"
