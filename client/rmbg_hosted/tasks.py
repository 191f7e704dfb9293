"""The hosted APIs' task schema (Runware's task array: files 001 and 003 of the hosted-API documents).

Both the client library (``RmbgClient.remove_background``) and the gateway (``POST /v1``, and the
WebSocket on the same path) run tasks here, so a task one accepts the other accepts too, with the
same errors. The models are pydantic (the gateway's OpenAPI document is generated from them).
A task is parsed once into a ``Removal`` with typed ``Options`` (``settings`` and the top-level
``outputFormat``/``outputQuality``/``providerSettings`` merged and validated by the one OPTIONS
schema), so a key the server would refuse is refused before any image is fetched, named as the
caller wrote it (``settings.rgba``, ``outputQuality``).

Errors render as ``{"code", "message", "parameter", "taskType", "taskUUID"}`` (``task_error``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)

from rmbg_backend.options import ALLOWED_KEYS, OUTPUT_FORMATS, Options
from rmbg_hosted.errors import InvalidInputError, RmbgError
from rmbg_hosted.flow import Fields, Output, Ports, Removal, options_named, run_task
from rmbg_hosted.inputs import check_header, request_image, to_base64, to_data_uri

MIN_TTL_S, DEFAULT_TTL_S = 60, 86400
TTL_CEILING_S = 10 * 365 * 86400  # what the schema takes at all; a gateway's --max-ttl is lower
OUTPUT_TYPES = ("URL", "base64Data", "dataURI")
TOP_LEVEL_OPTIONS = ("outputFormat", "outputQuality")


def _v4(value: Any) -> Any:
    """A UUID v4 in its canonical lower-case form (an upper-case copy is the same task)."""
    if not isinstance(value, str):
        return value  # the str type check reports it
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValueError("must be a UUID v4 such as 'cdc8c516-310a-4646-b983-9cd3ec6993e4'") from None
    if parsed.version != 4 or str(parsed) != value.lower():
        raise ValueError("must be a UUID v4 in its 36-character form, such as 'cdc8c516-310a-4646-b983-9cd3ec6993e4'")
    return str(parsed)


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


LEGACY_REMOVAL = "imageBackgroundRemoval"  # what Runware's older SDKs (runware 0.5) send


class RemoveBackgroundTask(BaseModel):
    """A ``removeBackground`` task (001, 003), or its older name ``imageBackgroundRemoval``, whose
    options (``rgba``, ``alphaMatting``...) stand at the top level instead of under ``settings``."""

    model_config = _STRICT
    taskType: Literal["removeBackground", "imageBackgroundRemoval"]
    taskUUID: TaskUUID
    model: str | None = Field(None, max_length=200, description="a model name or alias; default isnet")
    inputs: TaskInputs | None = None
    inputImage: str | None = Field(None, description="older name of inputs.image")
    outputType: Literal["URL", "base64Data", "dataURI"] | None = Field(
        None, description="default URL (the client library, which hosts nothing: base64Data unless "
                          "uploadEndpoint is set)")
    outputFormat: str | None = Field(None, description="default PNG", json_schema_extra={"enum": list(OUTPUT_FORMATS)})
    outputQuality: int | None = Field(None, description="20..99, default 95")
    uploadEndpoint: HttpUrl | None = Field(None, description="PUT the result here; imageURL is it without its query")
    ttl: StrictInt | None = Field(None, ge=MIN_TTL_S, le=TTL_CEILING_S,
                                  description="seconds a hosted output lives (default 86400; at most the "
                                              "gateway's --max-ttl, default 7 days)")
    includeCost: StrictBool = False
    webhookURL: HttpUrl | None = Field(None, description="POST {\"data\": [result]} here when done")
    deliveryMethod: Literal["sync", "async"] = "sync"
    settings: dict[str, Any] = Field(default_factory=dict, description="the OPTIONS of the Triton service "
                                     "(README, \"OPTIONS\")")
    providerSettings: ProviderSettings | None = None

    _hoisted: frozenset[str] = PrivateAttr(frozenset())

    @model_validator(mode="wrap")
    @classmethod
    def _top_level_options(cls, raw: Any, handler: Any) -> RemoveBackgroundTask:
        """Options at the top level move under ``settings``: the older task name always sends them
        there, and @runware/sdk-js's ``removeBackground({inputImage, rgba, ...})`` sends them there
        under the new name. One schema for both; errors still name each key as it was sent."""
        hoisted: dict[str, Any] = {}
        if isinstance(raw, dict) and raw.get("taskType") in (LEGACY_REMOVAL, "removeBackground"):
            hoisted = {k: raw[k] for k in ALLOWED_KEYS if k in raw and k not in TOP_LEVEL_OPTIONS}
            if hoisted:
                settings = raw.get("settings") if isinstance(raw.get("settings"), dict) else {}
                raw = {k: v for k, v in raw.items() if k not in hoisted} | {"settings": {**settings, **hoisted}}
        task = handler(raw)
        task._hoisted = frozenset(hoisted)
        return task

    @property
    def legacy(self) -> bool:
        return self.taskType == LEGACY_REMOVAL

    @property
    def image(self) -> str:
        return self.inputs.image if self.inputs is not None else self.inputImage  # type: ignore[return-value]

    @property
    def fields(self) -> Fields:
        top = {k: k for k in TOP_LEVEL_OPTIONS if k in self.model_fields_set and k not in self.settings}
        top |= {k: k for k in self._hoisted}
        return Fields(image="inputs.image" if self.inputs is not None else "inputImage",
                      settings=None if self.legacy else "settings", options=top)

    def options(self) -> Options:
        """The OPTIONS, parsed once by the server's own schema; errors name the task's own field."""
        raw = dict(self.settings)
        for key in TOP_LEVEL_OPTIONS:
            if key in self.model_fields_set or key not in raw:
                value = getattr(self, key)
                if value is not None:
                    raw[key] = value
        bria = self.providerSettings.bria if self.providerSettings else None
        if bria is not None and "preserveAlpha" in bria.model_fields_set:
            raw["preserveAlpha"] = bria.preserveAlpha
        return options_named(raw, self.fields)

    def output_type(self, *, hosts_files: bool) -> str:
        """The outputType in effect; URL needs somewhere to put the file."""
        chosen = self.outputType or ("URL" if hosts_files or self.uploadEndpoint else "base64Data")
        if chosen == "URL" and not hosts_files and not self.uploadEndpoint:
            raise InvalidInputError("is required with outputType URL here: the client library does not host files "
                                    "(give a presigned PUT URL, choose base64Data or dataURI, or send the task to "
                                    "`rmbg gateway`, which hosts outputs)", parameter="uploadEndpoint")
        return chosen

    def removal(self, ports: TaskPorts, *, notify: bool = True) -> Removal:
        """The task as the flow's Removal; every check that needs no I/O happens here."""
        if self.ttl is not None and ports.max_ttl_s is not None and self.ttl > ports.max_ttl_s:
            raise InvalidInputError(f"must be at most {ports.max_ttl_s} s here (the gateway's --max-ttl), got "
                                    f"{self.ttl}", parameter="ttl")
        output_type = self.output_type(hosts_files=ports.hosts_files)
        return Removal(model=self.model or ports.default_model, image=self.image, options=self.options(),
                       fields=self.fields, host=output_type == "URL" and not self.uploadEndpoint,
                       upload_url=self.uploadEndpoint, ttl_s=self.ttl,
                       webhook_url=self.webhookURL if notify else None)

    def render(self, output: Output, cost_per_image: float) -> dict[str, Any]:
        """The hosted APIs' result object for this task."""
        result: dict[str, Any] = {"taskType": self.taskType, "taskUUID": self.taskUUID,
                                  "imageUUID": output.image_uuid, "inputImageUUID": output.input_image_uuid}
        output_type = self.outputType or ("URL" if output.url else "base64Data")
        if output_type == "URL":
            result["imageURL"] = output.url
        elif output_type == "dataURI":
            result["imageDataURI"] = to_data_uri(output.data, output.content_type)
        else:
            result["imageBase64Data"] = to_base64(output.data)
        if self.includeCost:
            result["cost"] = cost_per_image
        return result


class GetResponseTask(BaseModel):
    """``getResponse``: the result of an earlier ``deliveryMethod: async`` task."""

    model_config = _STRICT
    taskType: Literal["getResponse"]
    taskUUID: TaskUUID


class ImageUploadTask(BaseModel):
    """``imageUpload`` (runware 0.5 sends it before removing a local file's background): the image is
    kept as the caller's file; its ``imageUUID`` is an input for later tasks, ``imageURL`` reads it."""

    model_config = _STRICT
    taskType: Literal["imageUpload"]
    taskUUID: TaskUUID
    image: str = Field(description="a data URI, base64 or an http(s) URL")


Task = RemoveBackgroundTask | GetResponseTask | ImageUploadTask
TASK_TYPES: dict[str, type[BaseModel]] = {"removeBackground": RemoveBackgroundTask,
                                          LEGACY_REMOVAL: RemoveBackgroundTask, "getResponse": GetResponseTask,
                                          "imageUpload": ImageUploadTask}


class TaskPorts(Ports, Protocol):
    """What running a task array needs beyond the flow: where results go, and the job store."""

    hosts_files: bool
    default_model: str
    cost_per_image: float
    max_ttl_s: int | None

    async def reserve(self, task_uuid: str, ttl_s: int | None) -> bool:
        """Claim a taskUUID for a task that runs now; False when it was used before."""

    async def release(self, task_uuid: str) -> None:
        """Give back a taskUUID whose task failed: it produced nothing, so the caller may resend it."""

    async def enqueue(self, task: RemoveBackgroundTask, removal: Removal) -> dict[str, Any]:
        """Accept an async task (the gateway stores it; the client library runs it now)."""

    async def get_response(self, task_uuid: str) -> tuple[bool, dict[str, Any]]:
        """The stored outcome of an async task: (True, result) or (False, error item)."""

    async def keep(self, data: bytes, ttl_s: int | None) -> tuple[str, str]:
        """Keep an uploaded image as the caller's file: (imageUUID, imageURL)."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# What a required field must hold, for the message that says it is missing.
REQUIRED = {"taskUUID": "a UUID v4 such as 'cdc8c516-310a-4646-b983-9cd3ec6993e4'",
            "inputs.image": "an http(s) URL, a data URI or base64",
            "inputImage": "an http(s) URL, a data URI or base64",
            "image": "a data URI, base64 or an http(s) URL"}


def _from_validation(exc: ValidationError) -> InvalidInputError:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or None
    kind = err["type"]
    if kind == "missing" or (err.get("input") is None and kind.endswith("_type")):
        what = REQUIRED.get(where or "", err["msg"].removeprefix("Input should be ").rstrip("."))
        got = ", got null" if kind != "missing" else ""
        return InvalidInputError(f"is required: {what}{got}", code="missingParameter", parameter=where)
    if kind == "extra_forbidden":
        return InvalidInputError("unknown parameter (check its spelling and nesting)", code="unsupportedParameter",
                                 parameter=where)
    message = err["msg"].removeprefix("Value error, ")
    if where not in ("inputs.image", "inputImage"):  # never quote an image value: it may be someone's bytes
        message += f", got {_short(err.get('input'))}"
    return InvalidInputError(message, parameter=where)


def identity(raw: Any) -> tuple[str | None, str | None]:
    """(taskUUID, taskType) as sent, for error items, even when the task is invalid (printable text only)."""
    if not isinstance(raw, dict):
        return None, None

    def text(key: str) -> str | None:
        value = raw.get(key)
        if not isinstance(value, str) or not value or len(value) > 100:
            return None
        return value.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate cannot be sent back as JSON

    return text("taskUUID"), text("taskType")


def parse_task(raw: Any) -> Task:
    """Validate one task object; raises InvalidInputError naming the parameter."""
    if not isinstance(raw, dict):
        raise InvalidInputError(f"must be a JSON object, got {type(raw).__name__}", parameter="task")
    task_type = raw.get("taskType") if isinstance(raw.get("taskType"), str) else None
    model = TASK_TYPES.get(task_type or "")
    if model is None:
        what = "is required" if "taskType" not in raw else f"got {_short(raw.get('taskType'))}"
        raise InvalidInputError(f"must be one of {', '.join(TASK_TYPES)}; {what}", parameter="taskType",
                                code="missingParameter" if "taskType" not in raw else "invalidParameter")
    try:
        task = model.model_validate(raw)
    except ValidationError as exc:
        raise _from_validation(exc) from None
    if isinstance(task, RemoveBackgroundTask) and task.inputs is None and task.inputImage is None:
        raise InvalidInputError("is required: an http(s) URL, a data URI or base64", code="missingParameter",
                                parameter="inputs.image")
    return task


def task_error(error: RmbgError, task_uuid: str | None, task_type: str | None) -> dict[str, Any]:
    """The Runware error item: the one rendering of an error for the task protocol."""
    return {**error.shape(), "taskType": task_type, "taskUUID": task_uuid}


def duplicate(task_uuid: str) -> InvalidInputError:
    return InvalidInputError(f"{task_uuid} was used before; every task needs a new UUID v4",
                             code="conflictTaskUUID", parameter="taskUUID")


async def execute_task(raw: Any, ports: TaskPorts) -> dict[str, Any]:
    """One task of an array -> its result item (or the async acknowledgement); raises RmbgError."""
    task = parse_task(raw)
    if isinstance(task, ImageUploadTask):
        data = check_header(await request_image(task.image, ports.policy, name="image"), "image")
        image_uuid, url = await ports.keep(data, None)
        return {"taskType": task.taskType, "taskUUID": task.taskUUID, "imageUUID": image_uuid, "imageURL": url}
    if isinstance(task, GetResponseTask):
        ok, body = await ports.get_response(task.taskUUID)
        if not ok:
            raise StoredTaskError(body)
        return body
    removal = task.removal(ports)
    if task.deliveryMethod == "async":
        return await ports.enqueue(task, removal)
    if not await ports.reserve(task.taskUUID, task.ttl):
        raise duplicate(task.taskUUID)
    try:
        return await run_task(removal, ports, lambda output: task.render(output, ports.cost_per_image))
    except BaseException:
        await ports.release(task.taskUUID)  # nothing was produced: the caller may fix the task and resend it
        raise


class StoredTaskError(RmbgError):
    """An async task's stored failure, answered again by getResponse exactly as it was stored."""

    def __init__(self, item: dict[str, Any]) -> None:
        super().__init__(str(item.get("message", "")), code=item.get("code"), status=400)
        self.item = item


async def handle_task(raw: Any, ports: TaskPorts) -> tuple[dict[str, Any], RmbgError | None]:
    """One task of an array, failing alone: (result item, None) or (error item, the error)."""
    task_uuid, task_type = identity(raw)
    try:
        return await execute_task(raw, ports), None
    except StoredTaskError as exc:
        return exc.item, exc
    except RmbgError as exc:
        return task_error(exc, task_uuid, task_type), exc
