"""A second process on the same job store, for the kill -9 tests (run with ``python -m``).

``submit N``: stores N jobs, printing ``ACK <id>`` after each ``submit`` returned (the moment the
gateway would acknowledge it). ``work``: runs a JobRunner whose handler prints ``RUNNING <id>``
and then hangs, so the parent can SIGKILL it while it holds the lease. ``notify``: the handler
completes the job, and ``on_finished`` (the webhook) prints ``NOTIFYING <id>`` and hangs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from rmbg_server.gateway.jobs import Job, JobRunner, open_job_store


async def submit(store, n: int) -> None:
    for i in range(n):
        job = Job(id=f"child-{i}", protocol="task", request={"i": i})
        assert await store.submit(job)
        print(f"ACK {job.id}", flush=True)
    await asyncio.Event().wait()  # the parent kills us


async def work(store, lease_s: float, notify: bool) -> None:
    async def hang(job: Job) -> tuple[str, dict]:
        print(f"RUNNING {job.id} {job.attempts}", flush=True)
        await asyncio.Event().wait()
        return "completed", {}

    async def done(job: Job) -> tuple[str, dict]:
        return "completed", {"by": "child"}

    async def hang_notifying(job: Job) -> None:
        print(f"NOTIFYING {job.id} {job.status}", flush=True)
        await asyncio.Event().wait()

    runner = JobRunner(store, done if notify else hang, concurrency=1, lease_s=lease_s, poll_s=0.05, sweep_s=None,
                       on_finished=hang_notifying if notify else None)
    await runner.start()
    await asyncio.Event().wait()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["submit", "work", "notify"])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--redis")
    parser.add_argument("-n", type=int, default=1)
    parser.add_argument("--lease", type=float, default=1.0)
    args = parser.parse_args()
    store = open_job_store(args.data_dir, args.redis)
    await (submit(store, args.n) if args.mode == "submit" else work(store, args.lease, args.mode == "notify"))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
