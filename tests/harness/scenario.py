"""The replica scenarios of issue 12 (and the kill -9 durability of issue 11) as steps that report facts.

Each step drives real gateway processes over HTTP with the hosted APIs' own task shapes and
returns what happened; ``tests/integration/test_cluster.py`` and
``tests/server/gateway/test_durability.py`` assert on it, ``scripts/cluster_demo.py`` prints it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from rmbg_hosted.webhooks import DELIVERY_HEADER
from rmbg_server.gateway.jobs import JobStore
from tests.harness.cluster import GatewayProcess, WebhookReceiver


def run_with_client(step: Callable[[httpx.AsyncClient], Awaitable[Any]], timeout_s: float = 120.0) -> Any:
    """Run one async step with its own HTTP client, from synchronous code (tests, the demo)."""
    async def main() -> Any:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            return await step(client)

    return asyncio.run(main())


def data_uri(image: bytes, content_type: str = "image/jpeg") -> str:
    return f"data:{content_type};base64,{base64.b64encode(image).decode()}"


def remove_task(image: str, *, deliver_async: bool = False, webhook_url: str | None = None) -> dict[str, Any]:
    """A removeBackground task as in the hosted APIs' examples (001/003), with a fresh taskUUID."""
    task: dict[str, Any] = {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "model": "isnet",
                            "inputs": {"image": image}, "outputType": "URL", "outputFormat": "PNG"}
    if deliver_async:
        task["deliveryMethod"] = "async"
    if webhook_url:
        task["webhookURL"] = webhook_url
    return task


async def post_tasks(client: httpx.AsyncClient, gateway: str, tasks: list[dict[str, Any]],
                     retries_on_429: int = 50) -> tuple[int, dict[str, Any]]:
    """POST a task array; a 429 is waited out as a client would (Retry-After). Returns (status, body)."""
    for _ in range(retries_on_429):
        response = await client.post(f"{gateway}/v1", json=tasks)
        if response.status_code != 429:
            break
        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    try:
        return response.status_code, response.json()
    except ValueError:  # not the gateway's JSON (a proxy, a crash page): keep it for the report
        return response.status_code, {"errors": [{"code": "notJson", "message": response.text[:500]}]}


async def get_responses(client: httpx.AsyncClient, gateway: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """getResponse for each id (in arrays of at most 50): taskUUID -> its data item or error item."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 50):
        _, body = await post_tasks(client, gateway, [{"taskType": "getResponse", "taskUUID": t} for t in ids[i:i + 50]])
        for item in body.get("data", []):
            out[item["taskUUID"]] = item
        for item in body.get("errors", []):
            if item.get("taskUUID"):  # an error of the whole request (no taskUUID): ask again
                out[item["taskUUID"]] = {**item, "status": "error"}
    return out


async def wait_finished(client: httpx.AsyncClient, gateway: str, ids: Sequence[str],
                        timeout: float) -> dict[str, dict[str, Any]]:
    """Poll ``gateway`` until every id succeeded or failed, or ``timeout``; the last answers."""
    deadline = time.monotonic() + timeout
    while True:
        answers = await get_responses(client, gateway, ids)
        if all(answers.get(i, {}).get("status") in ("success", "error") for i in ids) or time.monotonic() > deadline:
            return answers
        await asyncio.sleep(0.2)


@dataclass
class Handoff:
    task_uuid: str
    status: str                # as read from the other replica
    seconds: float
    image_url: str | None
    file_from_other: int | None  # HTTP status of the hosted output fetched through the other replica
    content_type: str | None
    answer: dict[str, Any]     # the other replica's last getResponse item, as it was


async def handoff(client: httpx.AsyncClient, submit_to: str, read_from: str, image: bytes,
                  timeout: float = 60.0) -> Handoff:
    """An async task submitted to one replica, its result read and its file fetched through another."""
    t0 = time.monotonic()
    task = remove_task(data_uri(image), deliver_async=True)
    status, body = await post_tasks(client, submit_to, [task])
    if status != 200:
        raise AssertionError(f"submitting to {submit_to} answered {status}: {body}")
    answer = (await wait_finished(client, read_from, [task["taskUUID"]], timeout)).get(task["taskUUID"], {})
    seconds = time.monotonic() - t0
    url = answer.get("imageURL")
    file_status = content_type = None
    if url:  # the URL names the replica that ran it; ask the other one for the same file
        name = url.rsplit("/files/", 1)[-1]
        response = await client.get(f"{read_from}/files/{name}")
        file_status, content_type = response.status_code, response.headers.get("content-type")
    return Handoff(task["taskUUID"], answer.get("status", "missing"), seconds, url, file_status, content_type, answer)


@dataclass
class Load:
    sent: int = 0
    ok: int = 0
    refused: int = 0           # 429 answers, waited out and sent again (not accepted, so not lost)
    failed: list[str] = field(default_factory=list)   # accepted and then not answered with a result: lost
    ok_after_kill: int = 0
    killed: Any = None         # what kill() returned (LocalCluster.kill_triton: what the victim had answered)
    seconds: float = 0.0


async def load_with_kill(client: httpx.AsyncClient, gateways: Sequence[str], image: bytes, *, requests: int,
                         concurrency: int, kill_after: int, kill: Callable[[], Any]) -> Load:
    """``requests`` synchronous tasks spread over ``gateways``; ``kill()`` runs once ``kill_after`` succeeded."""
    result, lock, killed = Load(), asyncio.Lock(), asyncio.Event()
    image_uri = data_uri(image)
    pending = iter(range(requests))
    t0 = time.monotonic()

    async def one(i: int) -> None:
        task = remove_task(image_uri)
        gateway = gateways[i % len(gateways)]
        result.sent += 1
        while True:
            try:
                response = await client.post(f"{gateway}/v1", json=[task])
            except httpx.HTTPError as e:
                result.failed.append(f"{task['taskUUID']} via {gateway}: {type(e).__name__}: {e}")
                return
            if response.status_code == 429:
                result.refused += 1
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            break
        data = response.json().get("data", []) if response.status_code == 200 else []
        if not (data and data[0].get("imageURL")):
            result.failed.append(f"{task['taskUUID']} via {gateway}: HTTP {response.status_code} {response.text[:300]}")
            return
        async with lock:
            result.ok += 1
            if killed.is_set():
                result.ok_after_kill += 1
            elif result.ok >= kill_after:
                killed.set()
                result.killed = await asyncio.to_thread(kill)

    async def worker() -> None:
        for i in pending:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.monotonic() - t0
    return result


@dataclass
class Recovery:
    acked: list[str]
    counts_at_kill: dict[str, int]     # the store right after kill -9
    answers: dict[str, dict[str, Any]]  # taskUUID -> getResponse item, read from the survivor
    attempts: dict[str, int]
    webhooks: dict[str, list[str]]      # taskUUID -> the delivery id (X-Rmbg-Delivery) of each webhook received
    seconds: float                      # from kill -9 to every acknowledged job finished

    @property
    def completed(self) -> int:
        return sum(a.get("status") == "success" for a in self.answers.values())

    @property
    def notified_once(self) -> bool:
        """Every acknowledged task's webhook arrived, as one delivery (a re-send after a crash keeps its id)."""
        return all(len(set(self.webhooks.get(i, []))) == 1 for i in self.acked)

    @property
    def resent(self) -> int:
        """Webhooks sent again by a replica because the one that sent them died before recording it."""
        return sum(len(ids) - 1 for ids in self.webhooks.values())

    @property
    def reclaimed(self) -> int:
        """Jobs run again after their first worker died with them (lease expired)."""
        return sum(n > 1 for n in self.attempts.values())


async def kill_and_recover(client: httpx.AsyncClient, victim: GatewayProcess, image: bytes, *, jobs: int,
                           open_store: Callable[[], JobStore], recover: Callable[[], Awaitable[str]],
                           timeout: float = 120.0) -> Recovery:
    """Submit ``jobs`` async tasks (with webhooks) to ``victim``, kill -9 it while it runs some, then let
    ``recover`` (``restarted`` or ``woken``) finish them; read every result through the recovered gateway.
    ``open_store`` opens the victim's job store, to see what it held when it died."""
    store = open_store()
    try:
        with WebhookReceiver() as receiver:
            tasks = [remove_task(data_uri(image), deliver_async=True, webhook_url=receiver.url) for _ in range(jobs)]
            acked = []
            for task in tasks:  # one by one: an acknowledgement is the moment the job must be stored
                status, body = await post_tasks(client, victim.url, [task])
                if status == 200 and body.get("data"):
                    acked.append(task["taskUUID"])
            deadline = time.monotonic() + 30
            while (await store.counts())["processing"] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(victim.kill)
            t0 = time.monotonic()
            counts = await store.counts()
            survivor = await recover()
            answers = await wait_finished(client, survivor, acked, timeout)
            seconds = time.monotonic() - t0
            await asyncio.sleep(1.0)  # webhooks are posted after the result is stored
            attempts = {i: job.attempts for i in acked if (job := await store.get(i)) is not None}
            webhooks: dict[str, list[str]] = {}
            for delivery in receiver.deliveries:
                for item in json.loads(delivery.raw).get("data", []):
                    webhooks.setdefault(item["taskUUID"], []).append(delivery.headers.get(DELIVERY_HEADER, ""))
    finally:
        await store.close()
    return Recovery(acked, counts, answers, attempts, webhooks, seconds)


def restarted(gateway: GatewayProcess) -> Callable[[], Awaitable[str]]:
    """Recovery by restarting the killed gateway on its port and data (the single-machine case)."""
    async def recover() -> str:
        await asyncio.to_thread(gateway.start)
        return gateway.url
    return recover


@contextlib.contextmanager
def paused(gateway: GatewayProcess) -> Iterator[Callable[[], Awaitable[str]]]:
    """SIGSTOP a replica (it keeps its connections but takes no jobs, so the jobs are the victim's);
    yields the recovery that wakes it (SIGCONT), which also happens on leaving the block."""
    assert gateway.process is not None
    pid = gateway.process.pid

    async def woken() -> str:
        os.kill(pid, signal.SIGCONT)
        return gateway.url

    os.kill(pid, signal.SIGSTOP)
    try:
        yield woken
    finally:
        os.kill(pid, signal.SIGCONT)
