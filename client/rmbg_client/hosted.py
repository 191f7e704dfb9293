"""The client library's side of the hosted-API flow: ``remove_background`` runs tasks here.

The library hosts no files and keeps no job store: ``deliveryMethod: async`` runs now and returns
the result, ``ttl`` has nothing to expire, ``getResponse`` is refused, and ``webhookURL`` gets the
result POSTed before the call returns (retried, its address checked under the fetch policy).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rmbg_backend.options import Options
from rmbg_hosted.aliases import MODEL_ALIASES, family_of
from rmbg_hosted.errors import InvalidInputError, RmbgError
from rmbg_hosted.fetch import FetchPolicy, redact
from rmbg_hosted.flow import Inference, Removal, run_task
from rmbg_hosted.tasks import RemoveBackgroundTask
from rmbg_hosted.webhooks import post_webhook

log = logging.getLogger(__name__)
Remove = Callable[[bytes, Options, "bytes | None", str], Awaitable[Inference]]


@dataclass
class ClientTasks:
    """``TaskPorts`` over one client connection (``remove(image, options, background, model)``)."""

    remove: Remove
    default_model: str
    policy: FetchPolicy
    hosts_files: bool = False
    cost_per_image: float = 0.0
    max_ttl_s: int | None = None  # nothing is kept, so any ttl is fine

    @property
    def callback_policy(self) -> FetchPolicy:
        return self.policy

    def family(self, name: str, parameter: str | None) -> str:
        return family_of(name, MODEL_ALIASES, parameter=parameter)

    async def infer(self, family: str, image: bytes, options: Options, background: bytes | None) -> Inference:
        return await self.remove(image, options, background, family)

    async def host(self, image_uuid: str, data: bytes, content_type: str, ttl_s: int | None) -> str:
        raise AssertionError("the client library hosts no files (RemoveBackgroundTask.output_type refuses URL)")

    async def lookup(self, image_uuid: str) -> bytes | None:
        return None  # the library stores no outputs: an imageUUID input needs the gateway

    async def notify(self, url: str, body: dict[str, Any]) -> None:
        if not await post_webhook(url, body, policy=self.callback_policy):  # the caller still gets the result
            log.warning("webhookURL %s did not accept the result of task %s", redact(url), body["data"][0]["taskUUID"])

    def failed(self, error: RmbgError) -> None:
        return None  # the error reaches the caller as it is

    async def reserve(self, task_uuid: str, ttl_s: int | None) -> bool:
        return True  # nothing is stored, so nothing can be reused

    async def release(self, task_uuid: str) -> None:
        return None

    async def enqueue(self, task: RemoveBackgroundTask, removal: Removal) -> dict[str, Any]:
        return await run_task(removal, self, lambda output: task.render(output, self.cost_per_image))

    async def keep(self, data: bytes, ttl_s: int | None) -> tuple[str, str]:
        raise InvalidInputError("imageUpload needs somewhere to keep the image (`rmbg gateway`); the client "
                                "library sends images inline instead", parameter="taskType")

    async def get_response(self, task_uuid: str) -> tuple[bool, dict[str, Any]]:
        raise InvalidInputError("getResponse needs the gateway's job store (`rmbg gateway`); the client library "
                                "runs every task synchronously", parameter="taskType")
