"""Several replicas on one machine, as real processes (issue 12 item 4): two Triton servers, two
gateways sharing jobs and files through a real redis-server.

- a job submitted to one gateway is answered by the other, and its file is served by the other;
- kill -9 of one Triton under load: no accepted request is lost;
- kill -9 of one gateway holding running async jobs: they complete on the other, exactly once,
  once their leases expire (each webhook delivered, a re-send keeping its delivery id).

The Tritons serve the tiny IS-Net with synthetic weights at 256 px (the point is the plumbing, not
the masks), so each starts in seconds; the gateways take a dead replica's jobs after 3 s.
"""

from __future__ import annotations

import pytest

from rmbg_server.gateway.jobs import RedisJobStore
from tests.harness.cluster import LocalCluster
from tests.harness.scenario import handoff, kill_and_recover, load_with_kill, paused, run_with_client

pytestmark = [pytest.mark.triton, pytest.mark.slow]
JOB_LEASE_S = 3.0
RETRIED = "retrying on another endpoint"  # the gateway's log line for a request whose Triton went away
GATEWAY_ARGS = ["--workers", "2", "--job-lease", str(JOB_LEASE_S), "--allow-fetch-from", "127.0.0.1/32",
                "--allow-callbacks-to", "127.0.0.1/32"]


@pytest.fixture(scope="module")
def cluster(tiny_repository, redis_server, tmp_path_factory):
    # redis_server: only for its skip when redis-server cannot be installed; the cluster runs its own.
    with LocalCluster(tiny_repository, tmp_path_factory.mktemp("cluster"), gateway_args=GATEWAY_ARGS) as c:
        yield c


def test_a_job_submitted_to_one_gateway_is_answered_by_the_other(cluster, small_jpeg):
    first, second = (g.url for g in cluster.gateways)
    result = run_with_client(lambda client: handoff(client, first, second, small_jpeg))
    assert result.status == "success"
    assert result.image_url.startswith(f"{first}/files/")  # it ran where it was submitted ...
    assert (result.file_from_other, result.content_type) == (200, "image/png")  # ... yet the other serves it


def test_killing_a_triton_under_load_loses_no_accepted_request(cluster, small_jpeg):
    urls = [g.url for g in cluster.gateways]
    cluster.warm_up(small_jpeg)
    before = cluster.triton_answered(0)
    load = run_with_client(lambda client: load_with_kill(
        client, urls, small_jpeg, requests=72, concurrency=6, kill_after=24, kill=lambda: cluster.kill_triton(0)))
    assert cluster.tritons[0].process.poll() is not None  # it really died, mid-run ...
    assert load.killed - before >= 1, load  # ... after carrying part of the load ...
    retried = sum(g.log_text().count(RETRIED) for g in cluster.gateways)
    assert retried >= 1, load  # ... with requests in flight on it, which the gateways sent again to the other
    assert load.failed == []
    assert (load.sent, load.ok) == (72, 72)
    assert load.ok_after_kill >= 72 - 24 - 6, load  # at most the requests in flight at the kill finished before it


def test_killing_a_gateway_its_accepted_jobs_complete_on_the_other(cluster, small_jpeg):
    victim, survivor = cluster.gateways
    with paused(survivor) as woken:  # the victim alone takes the jobs it accepts
        recovery = run_with_client(lambda client: kill_and_recover(
            client, victim, small_jpeg, jobs=8, open_store=lambda: RedisJobStore(cluster.redis.url), recover=woken,
            timeout=60))
    assert len(recovery.acked) == 8
    assert recovery.counts_at_kill["processing"] >= 1  # the victim died holding leases
    assert recovery.completed == 8, recovery.answers
    assert recovery.reclaimed >= 1  # those ran again on the survivor after the lease expired
    assert recovery.notified_once  # finished once, notified once (a re-send after the kill keeps its delivery id)
    assert recovery.seconds < JOB_LEASE_S + 30
