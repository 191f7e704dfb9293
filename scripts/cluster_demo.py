"""`make cluster-demo`: two Triton servers, two gateways and Redis on this machine; kill things, lose nothing.

The same scenario as tests/integration/test_cluster.py, printed step by step:
1. an async task submitted to gateway 0 is answered by gateway 1, which also serves its file;
2. a load of synchronous tasks over both gateways while Triton 0 is killed with SIGKILL;
3. gateway 0 is killed with SIGKILL while it runs async jobs; gateway 1 completes them once the
   dead replica's leases expire, and each webhook arrives once.

By default the Tritons serve the tiny IS-Net with synthetic weights at 256 px (built into the
work directory in about half a minute): the point is the plumbing, not the masks. ``--repo``
runs it on a real model repository instead (``make repo``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness lives beside the tests it serves
from rmbg_server.gateway.jobs import RedisJobStore  # noqa: E402
from tests.harness.cluster import LocalCluster  # noqa: E402
from tests.harness.scenario import handoff, kill_and_recover, load_with_kill, paused  # noqa: E402

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "eval" / "images" / "ecssd_0039.jpg"


def say(text: str) -> None:
    print(text, flush=True)


async def scenario(cluster: LocalCluster, image: bytes, *, requests: int, jobs: int, lease_s: float) -> bool:
    g0, g1 = cluster.gateways
    async with httpx.AsyncClient(timeout=120) as client:
        say(f"\n1. async task to gateway 0 ({g0.url}), result read from gateway 1 ({g1.url})")
        h = await handoff(client, g0.url, g1.url, image)
        say(f"   {h.status} after {h.seconds:.2f} s; imageURL {h.image_url}\n"
            f"   the same file through gateway 1: HTTP {h.file_from_other} {h.content_type}")

        say(f"\n2. {requests} synchronous tasks over both gateways, 6 at a time; SIGKILL to Triton 0 "
            f"(pid {cluster.tritons[0].process.pid}) after {requests // 4} results")
        load = await load_with_kill(client, [g0.url, g1.url], image, requests=requests, concurrency=6,
                                    kill_after=requests // 4, kill=lambda: cluster.kill_triton(0))
        retried = sum(g.log_text().count("retrying on another endpoint") for g in cluster.gateways)
        say(f"   Triton 0 had answered {load.killed} requests when it was killed; "
            f"{retried} requests in flight on it were sent again to Triton 1 (gateway logs)")
        say(f"   sent {load.sent}, results {load.ok} ({load.ok_after_kill} after the kill), "
            f"429s waited out {load.refused}, lost {len(load.failed)} in {load.seconds:.1f} s")
        for line in load.failed:
            say(f"   LOST: {line}")

        say(f"\n3. {jobs} async tasks (with webhooks) to gateway 0 alone (gateway 1 paused with SIGSTOP); "
            f"SIGKILL to gateway 0 while it runs some")
        with paused(g1) as woken:
            async def recover() -> str:
                say(f"   gateway 0 killed; gateway 1 resumed: it takes the dead replica's jobs after their "
                    f"{lease_s:g} s lease")
                return await woken()

            r = await kill_and_recover(client, g0, image, jobs=jobs, recover=recover, timeout=lease_s + 60,
                                       open_store=lambda: RedisJobStore(cluster.redis.url))
        c = r.counts_at_kill
        say(f"   acknowledged {len(r.acked)}; at the kill: {c['queued']} queued, {c['processing']} running "
            f"on gateway 0")
        say(f"   completed {r.completed} of {len(r.acked)} within {r.seconds:.1f} s of the kill; "
            f"{r.reclaimed} ran again after their lease expired")
        say(f"   webhooks: {sum(map(len, r.webhooks.values()))} deliveries for {len(r.webhooks)} tasks; "
            f"{r.resent} re-sent by gateway 1 for tasks gateway 0 had finished but not recorded as notified "
            f"(same X-Rmbg-Delivery id, so a receiver deduplicates them)")
    ok = (h.status == "success" and h.file_from_other == 200 and not load.failed and load.ok == requests
          and r.completed == len(r.acked) == jobs and r.notified_once)
    say(f"\n{'nothing lost' if ok else 'SOMETHING WAS LOST: see above'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, help="model repository to serve (default: build the tiny one)")
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--work", type=Path, default=Path("out/cluster"), help="logs, data dirs, the tiny repository")
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--job-lease", type=float, default=3.0, help="seconds before a dead gateway's jobs move")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.image.is_file():
        say(f"no image at {args.image}; pass --image FILE")
        return 2
    repo = args.repo
    if repo is None:
        from rmbg_export.repository import build_repo

        repo = args.work / "tiny_repository"
        if not (repo / "rmbg_isnet").is_dir():
            say(f"building the tiny IS-Net repository (synthetic weights, 256 px) in {repo} ...")
            build_repo("isnet", "synthetic", out=repo, size=256, variant="isnet-tiny")
    gateway_args = ["--workers", "2", "--job-lease", str(args.job_lease), "--allow-fetch-from", "127.0.0.1/32"]
    t0 = time.monotonic()
    say(f"starting redis-server, 2 Tritons and 2 gateways (logs in {args.work}/) ...")
    shutil.rmtree(args.work / "run", ignore_errors=True)
    with LocalCluster(repo, args.work / "run", gateway_args=gateway_args) as cluster:
        say(f"ready in {time.monotonic() - t0:.1f} s: Redis {cluster.redis.url}; Tritons "
            f"{', '.join(t.grpc_url for t in cluster.tritons)}; gateways {', '.join(g.url for g in cluster.gateways)}")
        ok = asyncio.run(scenario(cluster, args.image.read_bytes(), requests=args.requests, jobs=args.jobs,
                                  lease_s=args.job_lease))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
