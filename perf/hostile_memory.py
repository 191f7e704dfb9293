"""Peak memory (VmHWM) of the pre/post Python-backend stubs before and after the hostile corpus.

Starts the real server on free loopback ports, warms it with valid requests, reads each stub's
VmHWM and VmRSS from /proc/PID/status ("before"), sends the whole corpus mixed with valid
requests (tests/hostile/corpus.py, as the served test does) and reads them again ("after").
Then, per class of the corpus, resets each stub's peak (/proc/PID/clear_refs, 5), sends only
that class and records the peak it reached: which class costs the most memory.

    python perf/hostile_memory.py [--repo model_repository] [--out perf/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.machine import machine_info  # noqa: E402

STEPS = ("preprocess", "postprocess")


def status_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def step_stubs(server_pid: int) -> dict[int, str]:
    from rmbg_server.watchdog import stub_processes

    return {pid: model for pid, model in stub_processes(server_pid).items() if model.startswith(STEPS)}


def snapshot(stubs: dict[int, str]) -> dict[str, dict[str, float]]:
    return {f"{model} (pid {pid})": status_mb(pid) for pid, model in sorted(stubs.items(), key=lambda kv: kv[1])}


def reset_peaks(stubs: dict[int, str]) -> None:
    for pid in stubs:
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    ap.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = ap.parse_args()

    from rmbg_client import RmbgClient
    from rmbg_server.launcher import ServerConfig, TritonServer
    from rmbg_server.watchdog import StubWatchdog
    from tests.conftest import eval_pairs
    from tests.hostile.corpus import CASES, KINDS, mismatches, run_mixed

    valid = next(p for p in eval_pairs() if p.id == "ecssd_0039").image.read_bytes()
    server = TritonServer(ServerConfig.on_free_ports(args.repo),
                          log_file=Path(tempfile.gettempdir()) / "rmbg-hostile-memory-triton.log")
    server.start(timeout=300)
    # On a shared machine the kernel's OOM killer may pick the 3 GB engine stub: reload it as
    # `rmbg serve` does, and report the replacement (the pre/post figures stay comparable).
    watchdog = StubWatchdog(server.process.pid, args.repo, server.reload, interval=0.5)
    watchdog.start()
    try:
        client = RmbgClient(server.grpc_url)
        for options in ({}, {"outputFormat": "WEBP"}, {"returnOnlyMask": True}, {"alphaMatting": True}):
            client.remove(valid, options)  # every code path imported and warm
        stubs = step_stubs(server.process.pid)
        before = snapshot(stubs)
        t0 = time.perf_counter()
        failures = mismatches(run_mixed(client, CASES, valid))
        elapsed = time.perf_counter() - t0
        after = snapshot(stubs)
        per_kind = {}
        for kind in KINDS:
            reset_peaks(stubs)
            failures += mismatches(run_mixed(client, [c for c in CASES if c.kind == kind], valid))
            per_kind[kind] = {name: v["VmHWM"] for name, v in snapshot(stubs).items()}
        if set(step_stubs(server.process.pid)) != set(stubs):
            failures.append("a pre/post stub was replaced during the run (crashed?)")
    finally:
        watchdog.stop()
        server.stop()
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine_info(), "cases": len(CASES), "corpus_seconds": round(elapsed, 1),
        "unexpected_results": failures,
        "note": "MB; 'before' is after warm-up with valid requests (peak since the stub started), 'after' "
                "follows the whole corpus mixed with valid requests; per_kind is the peak reached by one class "
                "alone after resetting the peak (clear_refs 5)",
        "before": before, "after": after, "per_kind_peak": per_kind,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "hostile_memory.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    for name in after:
        print(f"{name:36s} VmHWM before {before[name]['VmHWM']:7.1f} MB  after {after[name]['VmHWM']:7.1f} MB  "
              f"VmRSS after {after[name]['VmRSS']:7.1f} MB")
    worst = max(per_kind, key=lambda k: max(per_kind[k].values()))
    print(f"{len(CASES)} cases in {elapsed:.0f} s; heaviest class alone: {worst} "
          f"({max(per_kind[worst].values()):.0f} MB); unexpected results: {len(failures)} -> {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
