"""The hosted APIs' ``removeBackground`` task in, their response shape out.

A platform that today posts tasks such as
``{"taskType": "removeBackground", "taskUUID": ..., "inputs": {"image": ...}, "settings": {...},
"outputType": "base64Data", "outputFormat": "PNG"}`` can pass them through unchanged.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from rmbg_client.errors import InvalidInputError
from rmbg_client.images import to_base64, to_data_uri, to_image_bytes, upload

OUTPUT_TYPES = ("URL", "base64Data", "dataURI")
_TOP_LEVEL = {"taskType", "taskUUID", "inputs", "inputImage", "settings", "outputType", "outputFormat",
              "outputQuality", "uploadEndpoint", "includeCost", "model"}


class _Remover(Protocol):
    """What a task needs of a client (``RmbgClient`` in practice), without importing it."""

    def remove(self, image: Any, options: dict[str, Any] | str | None = None, background: Any = None) -> Any: ...


def _task_error(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"{field}: {message}")


def parse_task(task: dict[str, Any]) -> tuple[Any, dict[str, Any], str, str | None]:
    """Validate the task; returns (image value, OPTIONS, outputType, uploadEndpoint)."""
    if not isinstance(task, dict):
        raise _task_error("task", "must be a JSON object")
    if task.get("taskType") != "removeBackground":
        raise _task_error("taskType", f"must be 'removeBackground', got {task.get('taskType')!r}")
    if not isinstance(task.get("taskUUID"), str) or not task["taskUUID"]:
        raise _task_error("taskUUID", "is required (a string, normally a UUID v4)")
    unknown = sorted(set(task) - _TOP_LEVEL)
    if unknown:
        raise _task_error(unknown[0], f"unknown task field; allowed: {', '.join(sorted(_TOP_LEVEL))}")
    inputs = task.get("inputs") or {}
    image = inputs.get("image") if isinstance(inputs, dict) else None
    image = image if image is not None else task.get("inputImage")
    if image is None:
        raise _task_error("inputs.image", "is required (URL, base64, data URI or a path)")
    settings = task.get("settings") or {}
    if not isinstance(settings, dict):
        raise _task_error("settings", "must be an object of OPTIONS names")
    options = dict(settings)
    for key in ("outputFormat", "outputQuality"):
        if key in task:
            options[key] = task[key]
    output_type = task.get("outputType", "base64Data")
    if output_type not in OUTPUT_TYPES:
        raise _task_error("outputType", f"must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
    endpoint = task.get("uploadEndpoint")
    if output_type == "URL" and not endpoint:
        raise _task_error("uploadEndpoint", "is required with outputType URL (a presigned PUT URL; "
                          "this self-hosted service does not host images)")
    return image, options, output_type, endpoint


def remove_background(task: dict[str, Any], client: _Remover, *, fetch_timeout: float = 30.0,
                      max_fetch_bytes: int = 50 * 1024 * 1024) -> dict[str, Any]:
    """Run one task; returns ``{taskType, taskUUID, imageUUID, imageBase64Data|imageDataURI|imageURL}``."""
    image, options, output_type, endpoint = parse_task(task)
    data = to_image_bytes(image, max_bytes=max_fetch_bytes, timeout=fetch_timeout, name="inputs.image")
    result = client.remove(data, options)
    response: dict[str, Any] = {"taskType": "removeBackground", "taskUUID": task["taskUUID"],
                                "imageUUID": str(uuid.uuid4())}
    if endpoint:
        upload(endpoint, result.data, result.content_type)
    if output_type == "URL":
        response["imageURL"] = endpoint.split("?", 1)[0]
    elif output_type == "dataURI":
        response["imageDataURI"] = to_data_uri(result.data, result.content_type)
    else:
        response["imageBase64Data"] = to_base64(result.data)
    return response
