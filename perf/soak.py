"""`make soak`: a bounded, fixed-rate load on 127.0.0.1 that watches the server's memory.

Sends requests at a fixed rate (a mix of options, formats and some malformed inputs) for
``--minutes``, samples the RSS of tritonserver and of every Python-backend stub every
``--sample-s`` seconds, and fails when the total RSS grew by more than ``--max-growth``
between the end of the warm-up and the end of the run. Writes perf/results/soak.{json,png}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe, machine_info  # noqa: E402

OPTION_MIX = [{}, {"outputFormat": "WEBP"}, {"outputFormat": "JPG", "rgba": [255, 255, 255, 255]},
              {"returnOnlyMask": True}, {"postProcessMask": True}, {"alphaMatting": True}]
BAD = [(b"", "{}"), (b"not an image", "{}"), (None, '{"outputQuality": 5}')]


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 10)))
    ap.add_argument("--rate", type=float, default=0.0,
                    help="requests per second (default: half of what the server does one request at a time here)")
    ap.add_argument("--sample-s", type=float, default=60.0)
    ap.add_argument("--warmup-s", type=float, default=None, help="default: 20%% of the run, at least 60 s")
    ap.add_argument("--max-growth", type=float, default=0.05)
    ap.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    ap.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = ap.parse_args()
    duration = args.minutes * 60
    warmup = args.warmup_s if args.warmup_s is not None else max(60.0, 0.2 * duration)
    sample_s = min(args.sample_s, duration / 4)

    from rmbg_client import RmbgClient, RmbgError
    from rmbg_server.launcher import ServerConfig, TritonServer
    from rmbg_server.watchdog import stub_processes
    from tests.conftest import eval_pairs

    server = TritonServer(ServerConfig.on_free_ports(args.repo),
                          log_file=Path(tempfile.gettempdir()) / "rmbg-soak-triton.log")
    server.start(timeout=180)
    client = RmbgClient(server.grpc_url)
    images = [p.image.read_bytes() for p in eval_pairs() if p.width * p.height < 1_000_000][:12]
    if not args.rate:  # sized from this machine: a fixed rate overloads a slow CPU and idles a fast one
        client.remove(images[0])
        t0 = time.monotonic()
        for image in images[:4]:
            client.remove(image)
        args.rate = round(0.5 * 4 / (time.monotonic() - t0), 3)
    machine = machine_info()
    print(f"machine: {describe(machine)}; rate {args.rate} requests/s", flush=True)
    counts = {"ok": 0, "rejected_as_expected": 0, "unexpected_errors": 0}
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def one(i: int) -> None:
        if i % 10 == 9:
            image, options = BAD[(i // 10) % len(BAD)]
            expected_error = True
            image = image if image is not None else images[0]
        else:
            image, options, expected_error = images[i % len(images)], OPTION_MIX[i % len(OPTION_MIX)], False
        try:
            client.remove(image, options)
            key = "unexpected_errors" if expected_error else "ok"
        except RmbgError as exc:
            key = "rejected_as_expected" if expected_error else "unexpected_errors"
            if not expected_error:
                with lock:
                    errors.append(str(exc)[:300])
        with lock:
            counts[key] += 1

    def load() -> None:
        with ThreadPoolExecutor(8) as pool:
            t0 = time.monotonic()
            for i in itertools.count():
                target = t0 + i / args.rate
                if stop.wait(max(0.0, target - time.monotonic())):
                    break
                pool.submit(one, i)

    samples = []
    t_start = time.monotonic()
    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        while True:
            elapsed = time.monotonic() - t_start
            procs = {f"{m}:{pid}": pid for pid, m in stub_processes(server.process.pid).items()}
            procs["tritonserver"] = server.process.pid
            sample = {"t_s": round(elapsed, 1), "rss_kb": {k: rss_kb(p) for k, p in procs.items()},
                      "requests": dict(counts)}
            sample["total_kb"] = sum(sample["rss_kb"].values())
            samples.append(sample)
            print(f"t={elapsed / 60:5.1f} min total RSS {sample['total_kb'] / 1024:8.1f} MB  {counts}", flush=True)
            if elapsed >= duration:
                break
            time.sleep(min(sample_s, max(1.0, duration - elapsed)))
    finally:
        stop.set()
        loader.join(60)
        server.stop()
    base = next((s for s in samples if s["t_s"] >= warmup), samples[0])
    last = samples[-1]
    growth = (last["total_kb"] - base["total_kb"]) / base["total_kb"]
    per_process = {}
    for name, kb in last["rss_kb"].items():
        if name in base["rss_kb"] and base["rss_kb"][name]:
            per_process[name] = (kb - base["rss_kb"][name]) / base["rss_kb"][name]
    passed = growth <= args.max_growth and counts["unexpected_errors"] == 0
    report = {"command": " ".join(["python", *sys.argv]), "machine": machine, "minutes": args.minutes,
              "rate_per_s": args.rate, "warmup_s": warmup, "total_growth_after_warmup": growth,
              "per_process_growth": per_process, "max_growth": args.max_growth, "requests": counts,
              "unexpected_error_samples": errors[:10], "passed": passed, "samples": samples}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(report, indent=2))
    plot(samples, warmup, args.out / "soak.png")
    print(f"RSS growth after warm-up: {100 * growth:+.2f}% (limit {100 * args.max_growth:.0f}%), "
          f"requests {counts}: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


def plot(samples: list[dict], warmup: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = sorted({k for s in samples for k in s["rss_kb"]})
    t = [s["t_s"] / 60 for s in samples]
    for name in names:
        ax.plot(t, [s["rss_kb"].get(name, 0) / 1024 for s in samples], marker="o", label=name.rsplit(":", 1)[0])
    ax.plot(t, [s["total_kb"] / 1024 for s in samples], "k--", label="total")
    ax.axvline(warmup / 60, color="grey", ls=":", label="end of warm-up")
    ax.set(xlabel="minutes", ylabel="RSS MB", title="soak: resident memory of server and stubs")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
