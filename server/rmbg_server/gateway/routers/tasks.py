"""Runware's task array on ``POST /v1`` (hosted-API documents 001 and 003): a thin adapter over the flow.

The schema and the dispatch (removeBackground now or async, getResponse) are ``rmbg_hosted.tasks``,
shared with the client library; this router parses the body, admits the work and renders.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from rmbg_hosted.errors import InvalidInputError, RmbgError
from rmbg_hosted.flow import run_task
from rmbg_hosted.tasks import GetResponseTask, RemoveBackgroundTask, handle_task, parse_task, task_error
from rmbg_server.gateway.jobs import Job
from rmbg_server.gateway.ports import GatewayPorts
from rmbg_server.gateway.responses import BlobJSONResponse, error_response
from rmbg_server.gateway.state import gateway, ports_of

PATH = "/v1"
PROTOCOL = "task"
router = APIRouter(tags=["tasks"])


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


# The request body's schema, for the OpenAPI document (the route reads the body itself: one task or an array).
TaskBody = list[RemoveBackgroundTask | GetResponseTask] | RemoveBackgroundTask | GetResponseTask


def render_error(error: RmbgError) -> JSONResponse:
    """A whole request refused (auth, limits, a bad body), in the task array's shape."""
    return error_response(error, {"errors": [task_error(error, None, None)]})


def parse_json(body: bytes) -> Any:
    """The request body as JSON, or an error that says what is wrong with it."""
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        reason = f"it is not UTF-8 text: {exc.reason} at byte {exc.start}"
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at char {exc.pos}"
    except RecursionError:
        reason = "nested too deeply"
    raise InvalidInputError(f"is not valid JSON ({reason})", code="invalidJSON", parameter="body")


def _answer(outcomes: list[tuple[dict[str, Any], RmbgError | None]]) -> tuple[int, dict[str, str]]:
    """200 with any result. When every task failed: the status they share if it is a retryable one
    (429 for a limit, 503 for an outage, with the longest Retry-After), else 400, Runware's."""
    failures = [error for _, error in outcomes if error is not None]
    if len(failures) < len(outcomes):
        return 200, {}
    statuses = {error.status for error in failures}
    if len(statuses) == 1 and statuses <= {429, 503}:
        retry_after = max(error.retry_after or 1 for error in failures)
        return statuses.pop(), {"Retry-After": str(retry_after)}
    return 400, {}


@router.post(PATH, response_model=TaskResponse, response_model_exclude_none=True,
             summary="Run removeBackground tasks (one object or an array); getResponse fetches async results",
             responses={400: {"model": TaskResponse, "description": "every task failed"},
                        413: {"description": "body too large"}, 429: {"description": "at capacity"},
                        503: {"description": "the inference service is unavailable (Retry-After)"}})
async def tasks(request: Request) -> Response:
    gw = gateway(request)
    try:
        raw = parse_json(await request.body())
    except InvalidInputError as exc:
        return render_error(exc)
    items = raw if isinstance(raw, list) else [raw]
    limit = gw.settings.max_tasks_per_request
    if not items or len(items) > limit:
        return render_error(InvalidInputError(f"must hold 1 to {limit} tasks, got {len(items)}", parameter="body"))
    units = sum(1 for t in items if isinstance(t, dict) and t.get("taskType") == "removeBackground"
                and t.get("deliveryMethod") != "async")
    ports = ports_of(request)
    try:
        with gw.admit(units):
            outcomes = await asyncio.gather(*(handle_task(item, ports) for item in items))
    except RmbgError as exc:
        return render_error(exc)
    data = [body for body, error in outcomes if error is None]
    errors = [body for body, error in outcomes if error is not None]
    for _, error in outcomes:
        gw.metrics.tasks.labels(PROTOCOL, "failed" if error else "completed").inc()
    out: dict[str, Any] = {"data": data} if data else {}
    if errors:
        out["errors"] = errors
    status, headers = _answer(outcomes)
    return BlobJSONResponse(out, status, headers=headers)


async def run_job(job: Job, ports: GatewayPorts) -> dict[str, Any]:
    """An async task, run by the job runner: its webhook is the runner's (durable), not the flow's."""
    task = parse_task(job.request)
    assert isinstance(task, RemoveBackgroundTask)
    removal = task.removal(ports, notify=False)
    return await run_task(removal, ports, lambda output: task.render(output, ports.cost_per_image))


def failure_body(job: Job, error: RmbgError) -> dict[str, Any]:
    return task_error(error, job.id, "removeBackground")


def webhook_body(job: Job) -> dict[str, Any]:
    return {"data": [job.result]} if job.status == "completed" else {"errors": [job.error]}
