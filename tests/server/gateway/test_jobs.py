"""The job store on both real backends (a SQLite file, a real redis-server) and the JobRunner.

Several store objects on one backend stand for several gateway replicas: each has its own
connection (SQLite: its own thread and file handle; Redis: its own client).
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rmbg_server.gateway.jobs import STATUSES, Job, JobRunner, JobStore, RedisJobStore, SQLiteJobStore, open_job_store
from rmbg_server.gateway.jobs.store import QueueFull
from tests.conftest import ROOT

SLACK_S = 5.0  # upper bounds on timings: the machine running the tests may be heavily loaded


@dataclass
class Backend:
    name: str
    data_dir: Path
    redis_url: str | None

    def open(self) -> JobStore:
        return open_job_store(self.data_dir, self.redis_url)

    def child(self, *args: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "tests.server.gateway.jobs_child", *args, "--data-dir", str(self.data_dir)]
        if self.redis_url:
            cmd += ["--redis", self.redis_url]
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path) -> Backend:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return Backend(request.param, tmp_path, url)


def job(job_id: str, **kw) -> Job:
    return Job(id=job_id, protocol=kw.pop("protocol", "task"), request=kw.pop("request", {"n": job_id}), **kw)


def test_open_picks_the_backend(backend):
    async def main():
        store = backend.open()
        assert isinstance(store, RedisJobStore if backend.redis_url else SQLiteJobStore)
        await store.close()

    asyncio.run(main())
    if backend.name == "sqlite":
        assert (backend.data_dir / "jobs.sqlite3").is_file()


def test_submit_get_round_trip_survives_reopening(backend):
    original = job("a1", protocol="fal", request={"image_url": "http://x/y.jpg", "sync_mode": False, "n": [1, 2]},
                   webhook_url="http://127.0.0.1:9/hook", ttl_s=120)

    async def write():
        store = backend.open()
        assert await store.submit(original)
        assert await store.submit(job("a1")) is False  # the id is taken
        await store.close()

    async def read():
        store = backend.open()  # a new connection: what was acknowledged is on the backend
        got = await store.get("a1")
        assert await store.get("missing") is None
        await store.close()
        return got

    asyncio.run(write())
    assert asyncio.run(read()) == original


def test_reserve_id_is_unique_across_jobs_and_reservations(backend):
    async def main():
        a, b = backend.open(), backend.open()
        assert await a.reserve_id("sync-1", ttl_s=1)
        assert await b.reserve_id("sync-1", ttl_s=60) is False
        assert await b.submit(job("sync-1")) is False
        assert await a.submit(job("async-1"))
        assert await b.reserve_id("async-1", ttl_s=60) is False
        results = await asyncio.gather(*(s.reserve_id("race", 60) for s in (a, b) for _ in range(5)))
        assert results.count(True) == 1
        await asyncio.sleep(1.2)
        # the reservation of sync-1 expired: SQLite deletes its row, Redis expired the key itself
        assert await a.sweep() == (1 if backend.name == "sqlite" else 0)
        assert await b.reserve_id("sync-1", ttl_s=60)
        assert await a.reserve_id("async-1", ttl_s=60) is False  # a queued job is never swept
        await a.close()
        await b.close()

    asyncio.run(main())


def test_claim_is_fifo_and_transitions_are_counted(backend):
    async def main():
        store = backend.open()
        for i in range(3):
            assert await store.submit(job(f"j{i}"))
        assert await store.counts() == dict.fromkeys(STATUSES, 0) | {"queued": 3}
        first = await store.claim("w1", lease_s=30)
        assert (first.id, first.status, first.attempts) == ("j0", "processing", 1)
        assert (await store.get("j0")).status == "processing"
        second = await store.claim("w2", lease_s=30)
        assert second.id == "j1"
        assert await store.finish("j0", "w1", "completed", {"imageURL": "http://h/files/x.png"})
        assert await store.finish("j1", "w2", "failed", {"code": "bad", "message": "no"})
        assert await store.cancel("j2")
        assert await store.claim("w1", lease_s=30) is None
        done, failed = await store.get("j0"), await store.get("j1")
        assert (done.status, done.result, done.error) == ("completed", {"imageURL": "http://h/files/x.png"}, None)
        assert (failed.status, failed.result, failed.error) == ("failed", None, {"code": "bad", "message": "no"})
        assert await store.counts() == {"queued": 0, "processing": 0, "completed": 1, "failed": 1, "cancelled": 1}
        with pytest.raises(ValueError, match="'completed' or 'failed'"):
            await store.finish("j0", "w1", "cancelled", {})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="never 'processing'"):
            await store.submit(job("p", status="processing"))
        await store.close()

    asyncio.run(main())


def test_finish_lands_once_when_a_lease_expires_under_a_slow_worker(backend):
    async def main():
        a, b = backend.open(), backend.open()
        await a.submit(job("slow"))
        claimed_a = await a.claim("worker-a", lease_s=1.0)
        assert await b.claim("worker-b", lease_s=30) is None  # leased: not claimable yet
        await asyncio.sleep(1.2)
        claimed_b = await b.claim("worker-b", lease_s=30)
        assert (claimed_a.id, claimed_b.id, claimed_b.attempts) == ("slow", "slow", 2)
        assert await a.extend("slow", "worker-a", 30) is False  # the lease moved on
        assert await a.finish("slow", "worker-a", "completed", {"by": "a"}) is False
        assert await b.finish("slow", "worker-b", "completed", {"by": "b"})
        assert await b.finish("slow", "worker-b", "completed", {"by": "b again"}) is False
        assert (await a.get("slow")).result == {"by": "b"}
        await a.close()
        await b.close()

    asyncio.run(main())


def test_extend_keeps_the_job_from_other_workers(backend):
    async def main():
        a, b = backend.open(), backend.open()
        await a.submit(job("long"))
        await a.claim("worker-a", lease_s=1.5)
        for _ in range(5):  # 2.5 s in all: held beyond the first lease only by extending it
            await asyncio.sleep(0.5)
            assert await a.extend("long", "worker-a", 1.5)
            assert await b.claim("worker-b", lease_s=30) is None
        assert await a.finish("long", "worker-a", "completed", {})
        await a.close()
        await b.close()

    asyncio.run(main())


def test_a_notification_stays_pending_until_notified(backend):
    async def main():
        a, b = backend.open(), backend.open()
        await a.submit(job("n1", webhook_url="http://127.0.0.1:9/hook"))
        await a.claim("worker-a", lease_s=30)
        assert await a.finish("n1", "worker-a", "completed", {"ok": 1}, notify_lease_s=1.0)
        assert (await a.get("n1")).status == "completed"  # the result is visible at once
        assert await b.claim_notification("worker-b", lease_s=30) is None  # worker-a is notifying
        assert await a.extend("n1", "worker-a", 1.0)
        await asyncio.sleep(1.2)  # worker-a died while notifying
        orphan = await b.claim_notification("worker-b", lease_s=30)
        assert (orphan.id, orphan.status, orphan.result, orphan.attempts) == ("n1", "completed", {"ok": 1}, 1)
        assert await a.notified("n1", "worker-a") is False  # too late: worker-b has it now
        assert await b.notified("n1", "worker-b")
        assert await b.notified("n1", "worker-b") is False
        await asyncio.sleep(0.5)
        assert await a.claim_notification("worker-a", lease_s=30) is None
        assert await a.claim("worker-a", lease_s=30) is None  # a finished job is never run again
        await a.close()
        await b.close()

    asyncio.run(main())


def test_cancel_only_a_queued_job(backend):
    async def main():
        store = backend.open()
        await store.submit(job("c1"))
        await store.submit(job("c2"))
        assert await store.cancel("c1")
        assert await store.cancel("c1") is False
        assert await store.cancel("nope") is False
        claimed = await store.claim("w", lease_s=30)
        assert claimed.id == "c2"  # a cancelled job is never run
        assert await store.cancel("c2") is False  # running: too late
        assert (await store.get("c1")).status == "cancelled"
        await store.close()

    asyncio.run(main())


def test_release_puts_a_job_back_at_its_place(backend):
    async def main():
        store = backend.open()
        await store.submit(job("r1"))
        await store.submit(job("r2"))
        await store.claim("w", lease_s=30)
        assert await store.release("r1", "other") is False
        assert await store.release("r1", "w")
        again = await store.claim("w2", lease_s=30)
        assert (again.id, again.attempts) == ("r1", 1)
        await store.close()

    asyncio.run(main())


def test_sweep_deletes_finished_jobs_after_their_ttl_only(backend):
    async def main():
        store = backend.open()
        await store.submit(job("short", ttl_s=1))
        await store.submit(job("long", ttl_s=3600))
        await store.submit(job("waiting", ttl_s=1))
        for worker in ("w1", "w2"):
            claimed = await store.claim(worker, lease_s=30)
            await store.finish(claimed.id, worker, "completed", {})
        await store.submit(job("done-at-submit", status="completed", result={"r": 1}, ttl_s=1))
        assert await store.sweep() == 0
        await asyncio.sleep(1.3)
        assert await store.sweep() == 2
        assert await store.get("short") is None and await store.get("done-at-submit") is None
        assert (await store.get("long")).status == "completed"
        assert (await store.get("waiting")).status == "queued"  # accepted work is never swept
        assert await store.counts() == dict.fromkeys(STATUSES, 0) | {"queued": 1, "completed": 1}
        await store.close()

    asyncio.run(main())


def test_two_replicas_run_every_job_exactly_once(backend):
    calls: Counter[str] = Counter()
    finished: Counter[str] = Counter()
    by_runner: Counter[int] = Counter()

    def handler_for(runner: int):
        async def handler(j: Job) -> tuple[str, dict]:
            calls[j.id] += 1
            by_runner[runner] += 1
            await asyncio.sleep(0.01)
            return "completed", {"id": j.id, "runner": runner}
        return handler

    async def on_finished(j: Job) -> None:
        finished[j.id] += 1

    async def main():
        stores = [backend.open(), backend.open()]
        runners = [JobRunner(s, handler_for(i), concurrency=3, lease_s=5, poll_s=0.05, on_finished=on_finished,
                             sweep_s=None) for i, s in enumerate(stores)]
        for r in runners:
            await r.start()
        ids = [f"x{i}" for i in range(40)]
        for i, job_id in enumerate(ids):
            assert await stores[i % 2].submit(job(job_id))
        deadline = time.monotonic() + 60
        while (await stores[0].counts())["completed"] < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for r in runners:
            await r.stop()
        results = [await stores[0].get(job_id) for job_id in ids]
        for s in stores:
            await s.close()
        return ids, results

    ids, results = asyncio.run(main())
    assert [r.status for r in results] == ["completed"] * len(ids)
    assert calls == dict.fromkeys(ids, 1) and finished == dict.fromkeys(ids, 1)
    assert set(by_runner) == {0, 1}  # both replicas took part
    assert all(r.result["id"] == r.id and r.attempts == 1 for r in results)


def test_runner_survives_handler_errors_and_fails_only_that_job(backend):
    async def handler(j: Job) -> tuple[str, dict]:
        if j.request["n"] == "boom":
            raise RuntimeError("decoder exploded")
        if j.request["n"] == "bad-shape":
            return "done", {}  # not a status a handler may return
        return "completed", {"ok": j.id}

    async def main():
        store = backend.open()
        runner = JobRunner(store, handler, concurrency=1, poll_s=0.05, sweep_s=None)
        await runner.start()
        for name in ("boom", "bad-shape", "fine"):
            await store.submit(job(name))
        deadline = time.monotonic() + 20
        while (await store.counts())["queued"] + (await store.counts())["processing"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await runner.stop()
        out = {name: await store.get(name) for name in ("boom", "bad-shape", "fine")}
        await store.close()
        return out

    out = asyncio.run(main())
    assert (out["boom"].status, out["boom"].error) == (
        "failed", {"code": "internal", "message": "RuntimeError: decoder exploded"})
    assert out["bad-shape"].status == "failed" and "('completed'|'failed', dict)" in out["bad-shape"].error["message"]
    assert (out["fine"].status, out["fine"].result) == ("completed", {"ok": "fine"})


def test_a_job_that_keeps_killing_workers_is_failed_not_retried_forever(backend):
    ran: list[str] = []

    async def handler(j: Job) -> tuple[str, dict]:
        ran.append(j.id)
        return "completed", {}

    async def main():
        store = backend.open()
        await store.submit(job("poison"))
        for i in range(3):  # three workers claim it and die (their leases run out)
            assert (await store.claim(f"dead-{i}", lease_s=0.05)).attempts == i + 1
            await asyncio.sleep(0.1)
        runner = JobRunner(store, handler, concurrency=1, poll_s=0.05, max_attempts=3, sweep_s=None)
        await runner.start()
        deadline = time.monotonic() + 10
        while (await store.get("poison")).status != "failed" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await runner.stop()
        out = await store.get("poison")
        await store.close()
        return out

    out = asyncio.run(main())
    assert ran == []
    assert (out.status, out.attempts, out.error["code"]) == ("failed", 4, "internal")
    assert "3 times" in out.error["message"]


def test_stop_hands_a_running_job_back_to_another_replica(backend):
    async def main():
        a, b = backend.open(), backend.open()
        running = asyncio.Event()

        async def hang(j: Job) -> tuple[str, dict]:
            running.set()
            await asyncio.Event().wait()
            return "completed", {}

        async def quick(j: Job) -> tuple[str, dict]:
            return "completed", {"by": "b"}

        first = JobRunner(a, hang, concurrency=1, poll_s=0.05, grace_s=0.2, sweep_s=None)
        await first.start()
        await a.submit(job("handover"))
        await asyncio.wait_for(running.wait(), 10)
        t0 = time.monotonic()
        await first.stop()
        stop_s = time.monotonic() - t0
        assert (await b.get("handover")).status == "queued"  # released at once, not after a lease timeout
        second = JobRunner(b, quick, concurrency=1, poll_s=0.05, sweep_s=None)
        await second.start()
        deadline = time.monotonic() + 10
        while (await b.get("handover")).status != "completed" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await second.stop()
        out = await b.get("handover")
        await a.close()
        await b.close()
        return out, stop_s

    out, stop_s = asyncio.run(main())
    assert (out.status, out.result, out.attempts) == ("completed", {"by": "b"}, 1)
    assert stop_s < 0.2 + SLACK_S  # grace_s, not a lease


def read_line(proc: subprocess.Popen, prefix: str, timeout: float = 30) -> str:
    """The word after ``prefix`` on the child's next such stdout line (each line is flushed)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"the child printed no {prefix!r} line within {timeout} s") from None
    if not line.startswith(prefix):
        raise AssertionError(f"the child printed {line!r} (exit code {proc.poll()}), expected {prefix!r}")
    return line.split()[1]


def kill9(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()


def test_acknowledged_jobs_survive_kill9_of_the_submitter(backend):
    child = backend.child("submit", "-n", "3")
    try:
        acked = [read_line(child, "ACK") for _ in range(3)]
    finally:
        kill9(child)

    async def main():
        store = backend.open()
        out = [await store.get(job_id) for job_id in acked]
        await store.close()
        return out

    assert [(j.id, j.status, j.request) for j in asyncio.run(main())] == [
        (f"child-{i}", "queued", {"i": i}) for i in range(3)]


def kill9_while_holding(backend: Backend, held: Job, mode: str, line: str) -> None:
    """Store ``held``, let a child process take it (``work``: running it, ``notify``: notifying for
    it), and SIGKILL the child once it printed ``line``."""
    async def submit():
        store = backend.open()
        await store.submit(held)
        await store.close()

    asyncio.run(submit())
    child = backend.child(mode, "--lease", "1.0")
    try:
        assert read_line(child, line) == held.id
    finally:
        kill9(child)


async def run_until(runner: JobRunner, done: Callable[[], Awaitable[bool]], linger_s: float = 1.5) -> float:
    """Run ``runner`` until ``done()``, then ``linger_s`` more (to see nothing happens twice); the seconds to done."""
    t0 = time.monotonic()
    await runner.start()
    while not await done() and time.monotonic() < t0 + 20:
        await asyncio.sleep(0.05)
    seconds = time.monotonic() - t0
    await asyncio.sleep(linger_s)
    await runner.stop()
    return seconds


def test_a_job_leased_by_a_killed_process_completes_once_elsewhere(backend):
    calls: list[tuple[str, int]] = []
    notified: list[str] = []

    async def handler(j: Job) -> tuple[str, dict]:
        calls.append((j.id, j.attempts))
        return "completed", {"by": "survivor"}

    async def on_finished(j: Job) -> None:
        notified.append(j.id)

    kill9_while_holding(backend, job("orphan"), "work", "RUNNING")

    async def main():
        store = backend.open()
        assert (await store.get("orphan")).status == "processing"  # the dead process still holds the lease

        async def completed() -> bool:
            return (await store.get("orphan")).status == "completed"

        runner = JobRunner(store, handler, concurrency=2, lease_s=5, poll_s=0.05, on_finished=on_finished,
                           sweep_s=None)
        recovered_s = await run_until(runner, completed)
        out = await store.get("orphan")
        await store.close()
        return out, recovered_s

    out, recovered_s = asyncio.run(main())
    assert (out.status, out.result, out.attempts) == ("completed", {"by": "survivor"}, 2)
    assert calls == [("orphan", 2)] and notified == ["orphan"]
    assert recovered_s < 1.0 + SLACK_S  # the dead worker's lease, not the 5 s of ours


def test_a_webhook_interrupted_by_kill9_is_sent_by_another_process(backend):
    notified: list[tuple[str, str, dict]] = []

    async def never_run(j: Job) -> tuple[str, dict]:
        raise AssertionError(f"job {j.id} was run again")

    async def on_finished(j: Job) -> None:
        notified.append((j.id, j.status, j.result))

    kill9_while_holding(backend, job("hooked", webhook_url="http://127.0.0.1:9/hook"), "notify", "NOTIFYING")

    async def main():
        store = backend.open()

        async def was_notified() -> bool:
            return bool(notified)

        runner = JobRunner(store, never_run, concurrency=1, lease_s=5, poll_s=0.05, on_finished=on_finished,
                           sweep_s=None)
        await run_until(runner, was_notified)
        out = await store.get("hooked")
        await store.close()
        return out

    out = asyncio.run(main())
    assert notified == [("hooked", "completed", {"by": "child"})]
    assert (out.status, out.attempts) == ("completed", 1)


def test_the_queue_bound_is_one_check_and_insert_across_replicas(backend):
    """Forty submits at once through four replicas against --max-queued 5: exactly five are stored."""
    async def main():
        stores = [backend.open() for _ in range(4)]
        outcomes = await asyncio.gather(*(stores[i % 4].submit(job(f"q{i}"), max_queued=5) for i in range(40)),
                                        return_exceptions=True)
        counts = await stores[0].counts()
        for s in stores:
            await s.close()
        return outcomes, counts

    outcomes, counts = asyncio.run(main())
    assert sum(o is True for o in outcomes) == 5 and counts["queued"] == 5
    refused = [o for o in outcomes if o is not True]
    assert all(isinstance(o, QueueFull) and o.queued == 5 for o in refused)


def test_tenant_and_stored_inputs_travel_with_the_job(backend):
    async def main():
        a, b = backend.open(), backend.open()
        await a.submit(job("t1", tenant="0123456789abcdef", blobs=["b1", "b2"]))
        await a.submit(job("t2"))
        got = await b.get("t1"), await b.get("t2")
        for s in (a, b):
            await s.close()
        return got

    with_tenant, without = asyncio.run(main())
    assert (with_tenant.tenant, with_tenant.blobs) == ("0123456789abcdef", ["b1", "b2"])
    assert (without.tenant, without.blobs) == (None, [])


def test_a_database_of_an_older_gateway_gains_the_new_columns(tmp_path):
    """A jobs.sqlite3 written before tenants existed opens, keeps its jobs and stores tenants from then on."""
    import sqlite3

    path = tmp_path / "jobs.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript("""CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
        protocol TEXT NOT NULL, request TEXT NOT NULL, status TEXT NOT NULL, result TEXT, error TEXT,
        webhook_url TEXT, ttl_s INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, worker TEXT, lease_until REAL, expires_at REAL, notify TEXT);
        INSERT INTO jobs (id, protocol, request, status, ttl_s, created_at, updated_at)
        VALUES ('old', 'task', '{}', 'queued', 60, 0, 0);""")
    conn.close()

    async def main():
        store = SQLiteJobStore(path)
        await store.submit(job("new", tenant="t"))
        got = await store.get("old"), await store.get("new")
        await store.close()
        return got

    old, new = asyncio.run(main())
    assert (old.status, old.tenant, old.blobs) == ("queued", None, []) and new.tenant == "t"
