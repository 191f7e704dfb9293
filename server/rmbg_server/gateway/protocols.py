"""Request and response shapes of the hosted APIs the gateway speaks (fal 002, GMI 004; the task
array of 001/003 lives in ``rmbg_client.tasks``, shared with the client library).

Typed pydantic models: FastAPI validates fal and GMI bodies with them and the OpenAPI document at
``/docs`` is generated from them. Each protocol keeps its own error shape:
- task array: ``{"errors": [{"code", "message", "parameter", "taskType", "taskUUID"}]}``;
- fal: ``{"detail": [{"loc": ["body", PARAM], "msg", "type"}]}`` (fal's, which is FastAPI's);
- GMI: ``{"error": {"code", "message", "parameter"}}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from rmbg_client.tasks import GetResponseTask, RemoveBackgroundTask, TaskError

_STRICT = ConfigDict(extra="forbid", strict=True)


# -- task array (001, 003) -------------------------------------------------------------------
class TaskErrorItem(BaseModel):
    code: str
    message: str
    parameter: str | None = None
    taskType: str | None = None
    taskUUID: str | None = None


class TaskResponse(BaseModel):
    """``data``: results (and async acknowledgements); ``errors``: the tasks that failed, each alone."""

    data: list[dict[str, Any]] = Field(default_factory=list, description="result objects: taskType, taskUUID, "
                                       "imageUUID, inputImageUUID, imageURL | imageBase64Data | imageDataURI, cost")
    errors: list[TaskErrorItem] | None = None


TaskBody = list[RemoveBackgroundTask | GetResponseTask] | RemoveBackgroundTask | GetResponseTask


def task_errors(*errors: TaskError) -> dict[str, Any]:
    return {"errors": [e.shape() for e in errors]}


# -- fal (002) -------------------------------------------------------------------------------
class FalRemoveRequest(BaseModel):
    model_config = _STRICT
    image_url: str = Field(description="Input image: an http(s) URL, a data URI or base64")
    sync_mode: StrictBool = Field(False, description="return the image as a data URI; nothing is stored")


class FalReplaceRequest(BaseModel):
    model_config = _STRICT
    image_url: str = Field(description="Input image to cut out")
    ref_image_url: str = Field("", description="Background composited behind the subject (URL, data URI, base64)")
    ref_image_file: str | None = Field(None, description="Used when ref_image_url is empty")
    prompt: str | None = Field(None, description="Not offered: generative replacement answers 422")
    negative_prompt: str = Field("", description="Accepted for compatibility; only used with a prompt")
    refine_prompt: StrictBool = True
    seed: StrictInt | None = Field(None, ge=0, le=2147483647)
    fast: StrictBool = True
    num_images: StrictInt = Field(1, ge=1, le=4)
    sync_mode: StrictBool = False


class FalImage(BaseModel):
    url: str
    content_type: str
    file_name: str
    file_size: int
    width: int
    height: int


class FalRemoveResponse(BaseModel):
    image: FalImage


class FalReplaceResponse(BaseModel):
    images: list[FalImage]
    seed: int


class FalQueued(BaseModel):
    request_id: str
    response_url: str
    status_url: str
    cancel_url: str


class FalStatus(BaseModel):
    status: Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    request_id: str
    response_url: str | None = None
    queue_position: int | None = None
    logs: list[dict[str, Any]] | None = None
    error: str | None = None


FAL_OPERATIONS = ("remove", "replace")
FAL_REQUESTS: dict[str, type[BaseModel]] = {"remove": FalRemoveRequest, "replace": FalReplaceRequest}


def fal_error(parameter: str | None, message: str, code: str) -> dict[str, Any]:
    return {"detail": [{"loc": ["body", *(parameter.split(".") if parameter else [])], "msg": message,
                        "type": code}]}


# -- GMI (004) -------------------------------------------------------------------------------
class GmiPayload(BaseModel):
    model_config = _STRICT
    image: str = Field(description="Input image: an http(s) URL or base64 (JPEG or PNG)")


class GmiRequest(BaseModel):
    model_config = _STRICT
    model: str = Field(description="bria-image-remove-background, or any model alias")
    payload: GmiPayload


class GmiSubmitted(BaseModel):
    request_id: str
    status: Literal["queued", "processing", "success", "failed", "cancelled"]


class GmiOutcome(BaseModel):
    media_urls: list[str]


class GmiStatus(BaseModel):
    request_id: str
    model: str
    status: Literal["queued", "processing", "success", "failed", "cancelled"]
    outcome: GmiOutcome | None = None
    error: dict[str, Any] | None = None
    created_at: float | None = None
    updated_at: float | None = None


GMI_STATUS = {"queued": "queued", "processing": "processing", "completed": "success", "failed": "failed",
              "cancelled": "cancelled"}
FAL_STATUS = {"queued": "IN_QUEUE", "processing": "IN_PROGRESS", "completed": "COMPLETED", "failed": "COMPLETED",
              "cancelled": "COMPLETED"}


def gmi_error(parameter: str | None, message: str, code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "parameter": parameter}}
