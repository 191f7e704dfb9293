"""The hosted-API task schema shared by the client library and the gateway (rmbg_hosted.tasks)."""

import json
import re
from pathlib import Path

import pytest

from rmbg_backend.options import Options
from rmbg_client import RmbgClient
from rmbg_hosted.aliases import MODEL_ALIASES, family_of
from rmbg_hosted.errors import InvalidInputError
from rmbg_hosted.tasks import RemoveBackgroundTask, identity, parse_task, task_error
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
    assert task.options() == Options(rgba=(255, 255, 255, 0), postProcessMask=True, outputFormat="WEBP",
                                     outputQuality=80)
    assert task.output_type(hosts_files=False) == "dataURI"


@pytest.mark.parametrize("number", ["001", "003"])
def test_the_hosted_examples_parse_verbatim(number):
    examples = hosted_examples(number)
    assert len(examples) == {"001": 2, "003": 3}[number]
    for example in examples:
        task = parse_task(example)
        options = task.options()
        assert family_of(task.model) == {"001": "isnet", "003": "birefnet"}[number]
        assert options.outputFormat == "PNG"  # the documents' examples ask for PNG; PNG is also the default
        if number == "003":
            assert options.preserveAlpha is False
        else:
            assert options.alphaMatting is True and options.rgba == (255, 255, 255, 0)
        # the hosted default outputType is URL: the gateway hosts it, the client library falls back to base64
        assert task.output_type(hosts_files=True) == "URL"
        assert task.output_type(hosts_files=False) == "base64Data"


def test_platform_fields_are_accepted():
    task = parse_task({**BASE, "webhookURL": "https://hooks.example.invalid/rmbg", "deliveryMethod": "async",
                       "ttl": 3600, "includeCost": True, "uploadEndpoint": "https://bucket.example.invalid/o.png?s=1",
                       "providerSettings": {"bria": {"preserveAlpha": True}}, "model": "briaai/RMBG-2.0"})
    assert (task.deliveryMethod, task.ttl, task.includeCost) == ("async", 3600, True)
    assert task.options().preserveAlpha is True and task.output_type(hosts_files=False) == "URL"


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
    raw = {**BASE, **change}
    with pytest.raises(InvalidInputError) as info:
        task = parse_task(raw)
        task.options()
        task.output_type(hosts_files=False)
    item = task_error(info.value, *identity(raw))
    assert (item["parameter"], item["code"]) == (parameter, code), item
    assert item["taskUUID"] == (raw["taskUUID"] or None) and item["taskType"] == raw["taskType"]
    assert parameter.split(".")[-1] in item["message"]


def test_missing_task_uuid():
    task = dict(BASE)
    del task["taskUUID"]
    with pytest.raises(InvalidInputError) as info:
        parse_task(task)
    assert task_error(info.value, *identity(task)) == {
        "code": "missingParameter", "parameter": "taskUUID", "taskType": "removeBackground", "taskUUID": None,
        "message": "taskUUID: is required: a UUID v4 such as 'cdc8c516-310a-4646-b983-9cd3ec6993e4'"}


@pytest.mark.parametrize(("change", "parameter", "fragment"), [
    ({"taskUUID": None}, "taskUUID", "is required: a UUID v4"), ({"inputs": {"image": None}}, "inputs.image",
                                                                  "is required: an http(s) URL")])
def test_a_null_says_what_is_missing(change, parameter, fragment):
    """A null where a value is required says what the value must be (it used to say only "got None")."""
    with pytest.raises(InvalidInputError) as info:
        parse_task({**BASE, **change})
    assert (info.value.code, info.value.parameter) == ("missingParameter", parameter)
    assert fragment in info.value.message and info.value.message.endswith("got null")


def test_an_upper_case_copy_of_a_task_uuid_is_the_same_task():
    task = parse_task({**BASE, "taskUUID": BASE["taskUUID"].upper()})
    assert task.taskUUID == BASE["taskUUID"]


def test_aliases():
    assert family_of("runware:109@1") == family_of("briaai/RMBG-1.4") == "isnet"
    for name in ("bria:2@1", "briaai/RMBG-2.0", "bria-image-remove-background", "fal-ai/bria/background/remove",
                 "fal-ai/bria/background/replace", "birefnet"):
        assert MODEL_ALIASES[name] == "birefnet"
    with pytest.raises(InvalidInputError, match="unknown model 'sam'") as info:
        family_of("sam")
    assert (info.value.code, info.value.parameter) == ("unsupportedModel", "model")


def test_the_client_never_reads_a_local_file_named_in_a_task(tmp_path):
    """A task is someone else's data: /proc/self/environ or ~/.bashrc in inputs.image is never read."""
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
    with pytest.raises(InvalidInputError, match="does not host files") as info:
        client.remove_background({**BASE, "outputType": "URL"})
    assert info.value.parameter == "uploadEndpoint"


@pytest.mark.parametrize("task_type", ["removeBackground", "imageBackgroundRemoval"])
def test_options_at_the_top_level_are_the_settings_and_errors_name_them_as_sent(task_type):
    """@runware/sdk-js's removeBackground({inputImage, rgba, ...}) and runware 0.5 send options beside
    taskType; they mean what the same keys under settings mean."""
    top = parse_task({**BASE, "taskType": task_type, "rgba": [1, 2, 3, 4], "postProcessMask": True})
    nested = parse_task({**BASE, "settings": {"rgba": [1, 2, 3, 4], "postProcessMask": True}})
    assert top.options() == nested.options() == Options(rgba=(1, 2, 3, 4), postProcessMask=True)
    with pytest.raises(InvalidInputError) as info:
        parse_task({**BASE, "taskType": task_type, "rgba": [1, 2, 3]}).options()
    assert info.value.parameter == "rgba"
    with pytest.raises(InvalidInputError) as info:
        parse_task({**BASE, "settings": {"rgba": [1, 2, 3]}}).options()
    assert info.value.parameter == "settings.rgba"
