"""kill -9 of a real ``rmbg gateway`` (the embedded default: SQLite and files in --data-dir), then a
restart on the same data: every acknowledged async task completes, once, and its webhook is delivered
(at least once; a re-send after the crash carries the same delivery id).

The README ("Gateway jobs, webhooks and replicas"): an accepted async job is stored before it is
acknowledged and survives a crash of the gateway (kill -9, restart: it completes, once).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rmbg_server.gateway.jobs import open_job_store
from rmbg_server.launcher import ServerConfig, TritonServer
from tests.harness.scenario import (
    data_uri,
    kill_and_recover,
    post_tasks,
    remove_task,
    restarted,
    run_with_client,
    wait_finished,
)
from tests.server.gateway.conftest import GatewayProcess

pytestmark = [pytest.mark.triton, pytest.mark.slow]
JOB_LEASE_S = 3.0


@pytest.fixture(scope="module")
def tiny_triton(tiny_repository, tmp_path_factory):
    with TritonServer(ServerConfig.on_free_ports(tiny_repository),
                      log_file=tmp_path_factory.mktemp("logs") / "tiny-triton.log") as server:
        yield server


@pytest.fixture
def crashable_gateway(tiny_triton, tmp_path):
    """A gateway of its own (this test kills it), taking over its dead self's jobs after 3 s."""
    gateway = GatewayProcess(tiny_triton.grpc_url, tmp_path / "data", "--workers", "2",
                             "--job-lease", str(JOB_LEASE_S)).start()
    yield gateway
    gateway.stop()


def test_running_jobs_survive_kill9_and_complete_once_after_restart(crashable_gateway, small_jpeg):
    gw = crashable_gateway
    recovery = run_with_client(lambda client: kill_and_recover(
        client, gw, small_jpeg, jobs=6, open_store=lambda: open_job_store(gw.data_dir), recover=restarted(gw)))
    assert len(recovery.acked) == 6
    assert recovery.counts_at_kill["processing"] >= 1  # killed while it ran jobs
    assert recovery.completed == 6, recovery.answers
    assert recovery.reclaimed >= 1  # the jobs it was running ran again after restart, from their lease
    assert all(n <= 2 for n in recovery.attempts.values())
    assert recovery.notified_once  # a re-send after the kill keeps its delivery id: receivers deduplicate
    assert all(a["imageURL"].startswith(f"{gw.url}/files/") for a in recovery.answers.values())


def test_every_acknowledged_job_survives_kill9_in_the_middle_of_submissions(crashable_gateway, small_jpeg):
    """Submissions race the kill: whatever was acknowledged must be there after the restart."""
    gw = crashable_gateway
    image = data_uri(small_jpeg)
    tasks = [remove_task(image, deliver_async=True) for _ in range(12)]

    async def scenario(client: httpx.AsyncClient):
        acked: list[str] = []

        async def submit(task: dict) -> None:
            try:
                status, body = await post_tasks(client, gw.url, [task])
            except httpx.HTTPError:  # cut off by the kill: not acknowledged
                return
            if status == 200 and body.get("data"):
                acked.append(task["taskUUID"])
                if len(acked) == 4:
                    await asyncio.to_thread(gw.kill)

        await asyncio.gather(*(submit(t) for t in tasks))
        await asyncio.to_thread(gw.start)
        answers = await wait_finished(client, gw.url, [t["taskUUID"] for t in tasks], timeout=120)
        return acked, answers

    acked, answers = run_with_client(scenario)
    assert len(acked) >= 4
    assert all(answers[i]["status"] == "success" for i in acked), {i: answers[i] for i in acked}
    # one not acknowledged was either never stored or completed; it is never half-done
    assert {answers[t["taskUUID"]]["status"] for t in tasks} <= {"success", "error"}
    unknown = [a for a in answers.values() if a["status"] == "error"]
    assert all(a["code"] == "taskNotFound" for a in unknown), unknown
