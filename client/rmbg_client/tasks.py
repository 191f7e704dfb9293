"""The hosted APIs' task schema (files 001 and 003 of ../shared/hosted-apis), in one module.

Both the client library (``RmbgClient.remove_background``) and the gateway (``POST /v1``) parse
tasks here, so a task that one accepts the other accepts too, with the same errors. The models
are pydantic (the gateway's OpenAPI document is generated from them); ``settings`` are checked
by the OPTIONS schema itself (``rmbg_backend.options``), so a key the server would refuse is
refused before any image is fetched, naming ``settings.<key>``.

Every error is a ``TaskError`` that carries the hosted APIs' error shape:
``{"code", "message", "parameter", "taskType", "taskUUID"}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from rmbg_backend.errors import RequestError
from rmbg_backend.options import parse_options
from rmbg_client.errors import InvalidInputError
from rmbg_client.fetch import DEFAULT_POLICY, FetchPolicy, redact, resolve, upload_async
from rmbg_client.images import task_image_bytes_async, to_base64, to_data_uri
from rmbg_client.webhooks import post_webhook

log = logging.getLogger(__name__)
OUTPUT_TYPES = ("URL", "base64Data", "dataURI")
OUTPUT_FORMATS = ("PNG", "JPG", "WEBP", "AUTO")  # AUTO: PNG when the result has transparency, else JPG
DEFAULT_MODEL = "isnet"
MIN_TTL_S, DEFAULT_TTL_S = 60, 86400

# Hosted model names -> our model families (DESIGN.md section 3); ``--alias NAME=MODEL`` adds more.
MODEL_ALIASES: dict[str, str] = {
    "runware:109@1": "isnet", "briaai/RMBG-1.4": "isnet", "isnet": "isnet",
    "bria:2@1": "birefnet", "briaai/RMBG-2.0": "birefnet", "bria-image-remove-background": "birefnet",
    "birefnet": "birefnet", "fal-ai/bria/background/remove": "birefnet",
    "fal-ai/bria/background/replace": "birefnet",
}


class TaskError(InvalidInputError):
    """One task's bad input (or failure), in the hosted APIs' error shape."""

    def __init__(self, parameter: str | None, message: str, *, code: str = "invalidParameter",
                 task_uuid: str | None = None, task_type: str | None = None, status: int = 400) -> None:
        super().__init__(f"{parameter}: {message}" if parameter else message)
        self.parameter, self.message, self.code = parameter, message, code
        self.task_uuid, self.task_type, self.status = task_uuid, task_type, status

    def for_task(self, task_uuid: str | None, task_type: str | None) -> TaskError:
        """This error attributed to a task (errors raised deep down do not know which)."""
        self.task_uuid = self.task_uuid or task_uuid
        self.task_type = self.task_type or task_type
        return self

    def shape(self) -> dict[str, Any]:
        return {"code": self.code, "message": str(self), "parameter": self.parameter,
                "taskType": self.task_type, "taskUUID": self.task_uuid}


def resolve_model(name: str, aliases: Mapping[str, str] = MODEL_ALIASES) -> str:
    """A hosted model name or alias -> our model family (``isnet``, ``birefnet``)."""
    if name in aliases:
        return aliases[name]
    raise TaskError("model", f"unknown model {name[:100]!r}; accepted: {', '.join(sorted(aliases))}",
                    code="unsupportedModel")


def _v4(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the str type check reports it
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValueError("must be a UUID v4 such as 'cdc8c516-310a-4646-b983-9cd3ec6993e4'") from None
    if parsed.version != 4 or str(parsed) != value.lower():
        raise ValueError("must be a UUID v4 in its 36-character form, such as 'cdc8c516-310a-4646-b983-9cd3ec6993e4'")
    return value


def _upper(value: Any) -> Any:
    if isinstance(value, str):
        value = value.upper()
        return "JPG" if value == "JPEG" else value
    return value


def _http_url(value: Any) -> Any:
    if isinstance(value, str) and not value.lower().startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return value


TaskUUID = Annotated[str, BeforeValidator(_v4), Field(description="UUID v4, unique per task")]
HttpUrl = Annotated[str, BeforeValidator(_http_url), Field(max_length=8192)]
_STRICT = ConfigDict(extra="forbid", strict=True)


class TaskInputs(BaseModel):
    model_config = _STRICT
    image: str = Field(description="an http(s) URL, a data URI, base64, or the imageUUID of an earlier output "
                                   "(gateway); never a local file path")


class BriaSettings(BaseModel):
    model_config = _STRICT
    preserveAlpha: StrictBool = Field(False, description="keep an input alpha channel, combined with the mask")


class ProviderSettings(BaseModel):
    model_config = _STRICT
    bria: BriaSettings | None = None


class RemoveBackgroundTask(BaseModel):
    """A ``removeBackground`` task (001, 003)."""

    model_config = _STRICT
    taskType: Literal["removeBackground"]
    taskUUID: TaskUUID
    model: str | None = Field(None, max_length=200, description="a model name or alias; default isnet")
    inputs: TaskInputs | None = None
    inputImage: str | None = Field(None, description="older name of inputs.image")
    outputType: Literal["URL", "base64Data", "dataURI"] | None = Field(
        None, description="default URL (the client library, which hosts nothing: base64Data unless "
                          "uploadEndpoint is set)")
    outputFormat: Annotated[Literal["PNG", "JPG", "WEBP", "AUTO"], BeforeValidator(_upper)] = "PNG"
    outputQuality: StrictInt = Field(95, ge=20, le=99)
    uploadEndpoint: HttpUrl | None = Field(None, description="PUT the result here; imageURL is it without its query")
    ttl: StrictInt | None = Field(None, ge=MIN_TTL_S, description="seconds a hosted output lives (default 86400)")
    includeCost: StrictBool = False
    webhookURL: HttpUrl | None = Field(None, description="POST {\"data\": [result]} here when done")
    deliveryMethod: Literal["sync", "async"] = "sync"
    settings: dict[str, Any] = Field(default_factory=dict, description="the OPTIONS of DESIGN.md section 2")
    providerSettings: ProviderSettings | None = None

    @property
    def image(self) -> str:
        return self.inputs.image if self.inputs is not None else self.inputImage  # type: ignore[return-value]

    def options(self) -> dict[str, Any]:
        """The OPTIONS object for the server, validated by the server's own schema."""
        options = dict(self.settings)
        for key in ("outputFormat", "outputQuality"):
            if key in self.model_fields_set or key not in options:
                options[key] = getattr(self, key)
        bria = self.providerSettings.bria if self.providerSettings else None
        if bria is not None and "preserveAlpha" in bria.model_fields_set:
            options["preserveAlpha"] = bria.preserveAlpha
        try:
            parse_options(json.dumps(options))
        except RequestError as exc:
            where = exc.field if exc.field in ("outputFormat", "outputQuality") and exc.field not in self.settings \
                else "settings" if exc.field == "OPTIONS" else f"settings.{exc.field}"
            code = "unsupportedParameter" if "unknown option" in exc.message else "invalidParameter"
            raise self.error(where, exc.message, code=code) from None
        return options

    def output_type(self, *, hosts_files: bool) -> str:
        """The outputType in effect; URL needs somewhere to put the file."""
        chosen = self.outputType or ("URL" if hosts_files or self.uploadEndpoint else "base64Data")
        if chosen == "URL" and not hosts_files and not self.uploadEndpoint:
            raise self.error("uploadEndpoint", "is required with outputType URL here: the client library does not "
                                               "host files (give a presigned PUT URL, choose base64Data or dataURI, "
                                               "or send the task to `rmbg gateway`, which hosts outputs)")
        return chosen

    def error(self, parameter: str | None, message: str, **kwargs: Any) -> TaskError:
        return TaskError(parameter, message, task_uuid=self.taskUUID, task_type=self.taskType, **kwargs)


class GetResponseTask(BaseModel):
    """``getResponse``: the result of an earlier ``deliveryMethod: async`` task."""

    model_config = _STRICT
    taskType: Literal["getResponse"]
    taskUUID: TaskUUID


Task = RemoveBackgroundTask | GetResponseTask
TASK_TYPES = {"removeBackground": RemoveBackgroundTask, "getResponse": GetResponseTask}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _from_validation(exc: ValidationError, task_uuid: str | None, task_type: str | None) -> TaskError:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or None
    kind = err["type"]
    if kind == "missing":
        return TaskError(where, "is required", code="missingParameter", task_uuid=task_uuid, task_type=task_type)
    if kind == "extra_forbidden":
        return TaskError(where, "unknown parameter (check its spelling and nesting)", code="unsupportedParameter",
                         task_uuid=task_uuid, task_type=task_type)
    message = err["msg"].removeprefix("Value error, ")
    if where not in ("inputs.image", "inputImage"):  # never quote an image value: it may be someone's bytes
        message += f", got {_short(err.get('input'))}"
    return TaskError(where, message, task_uuid=task_uuid, task_type=task_type)


def parse_task(raw: Any) -> Task:
    """Validate one task object; raises TaskError naming the parameter and (when known) the taskUUID."""
    if not isinstance(raw, dict):
        raise TaskError("task", f"must be a JSON object, got {type(raw).__name__}")
    task_uuid = raw.get("taskUUID") if isinstance(raw.get("taskUUID"), str) and raw["taskUUID"] else None
    task_type = raw.get("taskType") if isinstance(raw.get("taskType"), str) else None
    model = TASK_TYPES.get(task_type or "")
    if model is None:
        raise TaskError("taskType", f"must be one of {', '.join(TASK_TYPES)}, got {_short(raw.get('taskType'))}",
                        code="missingParameter" if "taskType" not in raw else "invalidParameter",
                        task_uuid=task_uuid, task_type=task_type)
    try:
        task = model.model_validate(raw)
    except ValidationError as exc:
        raise _from_validation(exc, task_uuid, task_type) from None
    if isinstance(task, RemoveBackgroundTask) and task.inputs is None and task.inputImage is None:
        raise task.error("inputs.image", "is required: an http(s) URL, a data URI or base64",
                         code="missingParameter")
    return task


def content_uuid(data: bytes) -> str:
    """A stable UUID for input bytes (``inputImageUUID``): the same image always gets the same one."""
    return str(uuid.UUID(bytes=hashlib.sha256(data).digest()[:16], version=4))


def task_result(task: RemoveBackgroundTask, *, output_type: str, data: bytes, content_type: str,
                image_uuid: str, input_image_uuid: str, url: str | None = None,
                cost_per_image: float = 0.0) -> dict[str, Any]:
    """The hosted APIs' result object for a finished task."""
    result: dict[str, Any] = {"taskType": task.taskType, "taskUUID": task.taskUUID, "imageUUID": image_uuid,
                              "inputImageUUID": input_image_uuid}
    if output_type == "URL":
        result["imageURL"] = url
    elif output_type == "dataURI":
        result["imageDataURI"] = to_data_uri(data, content_type)
    else:
        result["imageBase64Data"] = to_base64(data)
    if task.includeCost:
        result["cost"] = cost_per_image
    return result


RemoveFn = Callable[[bytes, dict[str, Any], str], Awaitable[Any]]


async def run_task(raw: dict[str, Any], remove: RemoveFn, *, default_model: str = DEFAULT_MODEL,
                   policy: FetchPolicy = DEFAULT_POLICY, aliases: Mapping[str, str] = MODEL_ALIASES,
                   cost_per_image: float = 0.0) -> dict[str, Any]:
    """Run one ``removeBackground`` task with the client library; returns the hosted result object.

    ``remove(image_bytes, options, model)`` returns a ``RemovalResult``. The library hosts no files
    and keeps no job store: ``deliveryMethod: async`` runs now and returns the result, ``ttl`` has
    nothing to expire, and ``webhookURL`` gets ``{"data": [result]}`` POSTed before this returns
    (the gateway's delivery: retried with backoff, its address checked under ``policy``).
    """
    task = parse_task(raw)
    if not isinstance(task, RemoveBackgroundTask):
        raise TaskError("taskType", "getResponse needs the gateway's job store (`rmbg gateway`); the client "
                                    "library runs every task synchronously",
                        task_uuid=task.taskUUID, task_type=task.taskType)
    options = task.options()
    output_type = task.output_type(hosts_files=False)
    model = resolve_model(task.model, aliases) if task.model else default_model
    data = await task_image_bytes_async(task.image, policy)
    result = await remove(data, options, model)
    url = None
    if task.uploadEndpoint:
        await upload_async(task.uploadEndpoint, result.data, result.content_type, policy)
        url = task.uploadEndpoint.split("?", 1)[0]
    body = task_result(task, output_type=output_type, data=result.data, content_type=result.content_type,
                       image_uuid=str(uuid.uuid4()), input_image_uuid=content_uuid(data), url=url,
                       cost_per_image=cost_per_image)
    if task.webhookURL:
        await _post_webhook(task.webhookURL, {"data": [body]}, policy)
    return body


async def _post_webhook(url: str, body: dict[str, Any], policy: FetchPolicy) -> None:
    """One webhook implementation for both the client and the gateway (``rmbg_client.webhooks``)."""
    import httpx

    async def check(target: str) -> None:
        await resolve(target, policy, what="webhookURL")

    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(policy.timeout_s)) as client:
        if not await post_webhook(client, url, body, check_url=check):  # the caller still gets the result
            log.warning("webhookURL %s did not accept the result of task %s", redact(url), body["data"][0]["taskUUID"])
