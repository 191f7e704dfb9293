"""`make perf`: perf_analyzer load tests of the rmbg ensemble over gRPC and HTTP.

Installs perf_analyzer itself (the tritonclient 2.48.0 manylinux1 wheel carries the binary;
newer wheels need glibc 2.38), with Debian's libb64 unpacked next to it (no root needed) and
the libcudart copy inside nvidia-pytriton under the name it links against. Writes
``--input-data`` from eval photos (BYTES as base64 with the 4-byte little-endian length in
front), runs concurrency and request-rate sweeps, and stores perf/results/perf_*.{json,csv,png}.

Works on any machine: the windows are sized from a measured first latency (about ten requests
each) or use perf_analyzer's count_windows mode (``--count-windows N``); the request rates are
fractions of the measured throughput; each sweep point is its own perf_analyzer run, and a
point that never stabilises is reported with its best window (``stable: false``) while the
sweep carries on. The CPU model, ISA flags and load average are recorded with the figures.
"""

from __future__ import annotations

import argparse
import base64
import csv
import glob
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from machine import describe, machine_info

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"
TOOLS = ROOT / ".venv" / "perf-tools"
WHEEL = "tritonclient==2.48.0"
IMAGES = ["ecssd_0039.jpg", "grabcut_teddy.jpg", "ecssd_0074.jpg", "grabcut_person1.jpg", "davis_bike_00000.jpg",
          "grabcut_181079.jpg", "grabcut_flower.jpg", "ecssd_0100.jpg"]


def install() -> tuple[Path, dict[str, str]]:
    """perf_analyzer and the two libraries it needs, under .venv/perf-tools (once)."""
    binary = TOOLS / "perf_analyzer"
    libs = TOOLS / "lib"
    if not binary.exists():
        TOOLS.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "--platform", "manylinux1_x86_64", "--python-version", "3.11", "-d", tmp, WHEEL],
                           check=True)
            wheel = next(Path(tmp).glob("tritonclient-*.whl"))
            with zipfile.ZipFile(wheel) as z:
                with z.open("tritonclient-2.48.0.data/data/bin/perf_analyzer") as src, binary.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            binary.chmod(0o755)
    if not (libs / "libb64.so.0d").exists():
        libs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(["apt-get", "download", "libb64-0d"], cwd=tmp, capture_output=True, text=True)
            debs = list(Path(tmp).glob("libb64-0d*.deb"))
            if not debs:
                raise SystemExit(f"could not fetch Debian's libb64-0d (apt-get download): {proc.stderr.strip()}; "
                                 "run 'apt-get update' once, or install libb64-0d")
            subprocess.run(["dpkg", "-x", str(debs[0]), tmp + "/x"], check=True)
            shutil.copy(next(Path(tmp, "x").rglob("libb64.so.0d")), libs / "libb64.so.0d")
    cudart = libs / "libcudart.so.12"
    if not cudart.exists():
        import pytriton

        found = glob.glob(str(Path(pytriton.__file__).parents[1] / "nvidia_pytriton.libs" / "libcudart-*.so.12*"))
        if not found:
            raise SystemExit("libcudart.so.12 not found in nvidia_pytriton.libs")
        cudart.symlink_to(found[0])
    env = dict(os.environ, LD_LIBRARY_PATH=f"{libs}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    return binary, env


def b64_bytes(data: bytes) -> str:
    return base64.b64encode(struct.pack("<I", len(data)) + data).decode()


def write_input_data(path: Path, options: str) -> None:
    entries = []
    for name in IMAGES:
        data = (EVAL / "images" / name).read_bytes()
        entries.append({"IMAGE": {"b64": b64_bytes(data), "shape": [1]},
                        "OPTIONS": {"b64": b64_bytes(options.encode()), "shape": [1]}})
    path.write_text(json.dumps({"data": entries}))


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    components = ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
                  "Server Compute Infer", "Server Compute Output", "Client Recv")
    out = []
    for r in rows:
        out.append({"concurrency": float(r.get("Concurrency", 0) or 0),
                    "request_rate": float(r.get("Request Rate", 0) or 0) if "Request Rate" in r else None,
                    "images_per_s": float(r["Inferences/Second"]),
                    **{f"{q}_ms": float(r[f"{q} latency"]) / 1000.0 for q in ("p50", "p90", "p95", "p99")},
                    # perf_analyzer's mean latency is the sum of its components (microseconds)
                    "avg_ms": sum(float(r[c]) for c in components if c in r) / 1000.0,
                    "server_queue_ms": float(r.get("Server Queue", 0)) / 1000.0,
                    "server_compute_ms": float(r.get("Server Compute Infer", 0)) / 1000.0})
    return out


PASS_LINE = re.compile(r"Pass \[(\d+)\] throughput: ([\d.e+-]+) infer/sec\. Avg latency: (\d+) usec")
REQUESTS_PER_WINDOW = 10


def first_latency_s(url: str) -> float:
    """One warm-up request, then the median of three: what a window must be sized from."""
    from rmbg_client import RmbgClient

    data = (EVAL / "images" / IMAGES[0]).read_bytes()
    client = RmbgClient(url)
    client.remove(data)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        client.remove(data)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def window_args(latency_s: float, window_ms: int, count_windows: int) -> list[str]:
    """perf_analyzer's stabilisation windows, sized to hold about REQUESTS_PER_WINDOW requests.

    A fixed 8 s window holds only four requests on a machine that takes 2 s per image, and
    perf_analyzer then never sees three windows agree. ``count_windows`` asks instead for at
    least that many requests per window, whatever they take.
    """
    if count_windows:
        return ["--measurement-mode", "count_windows", "--measurement-request-count", str(count_windows)]
    ms = window_ms or int(min(300_000, max(4_000, REQUESTS_PER_WINDOW * latency_s * 1000)))
    return ["--measurement-mode", "time_windows", "--measurement-interval", str(ms)]


def best_pass(stdout: str) -> dict | None:
    """perf_analyzer -v prints one line per window; the highest-throughput one stands in when none agree."""
    passes = [{"pass": int(n), "images_per_s": float(t), "avg_ms": int(us) / 1000.0}
              for n, t, us in PASS_LINE.findall(stdout)]
    return max(passes, key=lambda r: r["images_per_s"], default=None) if passes else None


def run_point(binary: Path, env: dict, url: str, protocol: str, data: Path, csv_out: Path, flag: str, value: str,
              windows: list[str]) -> dict:
    """One sweep point in its own perf_analyzer run, so an unstable point cannot end the sweep."""
    cmd = [str(binary), "-m", "rmbg_isnet", "-u", url, "-i", protocol, "--input-data", str(data), "-b", "1",
           *windows, "--stability-percentage", "30", "--max-trials", "8", "-v", "-f", str(csv_out),
           flag, f"{value}:{value}"]
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    key = "concurrency" if flag == "--concurrency-range" else "request_rate"
    if proc.returncode == 0 and csv_out.exists():
        row = read_csv(csv_out)[0]
        row.update(stable=True, **{key: float(value)})
        print(f"  {key} {value}: {row['images_per_s']:.3f} images/s, p50 {row['p50_ms']:.0f} ms", flush=True)
        return row
    best = best_pass(proc.stdout)
    if best is None:
        raise SystemExit(f"perf_analyzer failed ({proc.returncode}) without one complete window:\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    reason = next((line for line in proc.stdout.splitlines() if "Failed" in line), f"exit {proc.returncode}")
    print(f"  {key} {value}: NOT STABLE ({reason.strip()}); best window {best['images_per_s']:.3f} images/s, "
          f"mean {best['avg_ms']:.0f} ms", flush=True)
    return {key: float(value), "images_per_s": best["images_per_s"], "avg_ms": best["avg_ms"], "stable": False,
            "best_window": best["pass"], "reason": reason.strip()}


def sweep(binary: Path, env: dict, url: str, protocol: str, data: Path, csv_out: Path, flag: str,
          values: list[str], windows: list[str]) -> list[dict]:
    rows = []
    for value in values:
        rows.append(run_point(binary, env, url, protocol, data, csv_out.with_suffix(".part.csv"), flag, value,
                              windows))
    csv_out.with_suffix(".part.csv").unlink(missing_ok=True)
    write_csv(rows, csv_out)
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    fields = sorted({k for r in rows for k in r})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)


def engine_precision(repo: Path, model: str = "isnet") -> str | None:
    """The precision `build-repo` wrote into the engine's config (int8 is the CPU default)."""
    from rmbg_export.configs import parse

    path = repo / model / "config.pbtxt"
    if not path.is_file():
        return None
    parameters = parse(path.read_text()).parameters
    return parameters["precision"].string_value if "precision" in parameters else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grpc-url", help="HOST:PORT of a running server (default: start one)")
    ap.add_argument("--http-url")
    ap.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    ap.add_argument("--concurrency", default="1,2,3,4,6,8", help="comma-separated concurrency levels")
    ap.add_argument("--load-fractions", default="0.3,0.6,0.9",
                    help="request-rate sweep as fractions of the measured single-request throughput")
    ap.add_argument("--window-ms", type=int, default=0,
                    help=f"time window per measurement (default: {REQUESTS_PER_WINDOW} x the measured latency)")
    ap.add_argument("--count-windows", type=int, default=0,
                    help="use perf_analyzer's count_windows mode with at least this many requests per window")
    ap.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = ap.parse_args()
    binary, env = install()
    server = None
    if not args.grpc_url:
        from rmbg_server.launcher import ServerConfig, TritonServer

        server = TritonServer(ServerConfig.on_free_ports(args.repo),
                              log_file=Path(tempfile.gettempdir()) / "rmbg-perf-triton.log")
        server.start(timeout=180)
        args.grpc_url, args.http_url = server.grpc_url, server.http_url.removeprefix("http://")
    machine = machine_info()
    print(f"machine: {describe(machine)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "perf_input_data.json"
    write_input_data(data, "{}")
    results: dict[str, list[dict]] = {}
    try:
        latency = first_latency_s(args.grpc_url)
        windows = window_args(latency, args.window_ms, args.count_windows)
        rates = [f"{float(f) / latency:.3f}" for f in args.load_fractions.split(",")]
        print(f"first latency {latency * 1000:.0f} ms -> {' '.join(windows)}; request rates {rates}", flush=True)
        levels = args.concurrency.split(",")
        for protocol, url in (("grpc", args.grpc_url), ("http", args.http_url)):
            results[f"{protocol}_concurrency"] = sweep(binary, env, url, protocol, data,
                                                       args.out / f"perf_{protocol}_concurrency.csv",
                                                       "--concurrency-range", levels, windows)
        # at a fixed rate, requests arrive every 1/rate s, so the slowest rate sizes the windows
        slowest = max(latency, 1.0 / min(float(r) for r in rates))
        results["grpc_request_rate"] = sweep(binary, env, args.grpc_url, "grpc", data,
                                             args.out / "perf_grpc_request_rate.csv", "--request-rate-range",
                                             rates, window_args(slowest, args.window_ms, args.count_windows))
    finally:
        if server is not None:
            server.stop()
        data.unlink(missing_ok=True)  # eval images stay out of the repository
    report = {"command": " ".join(["python", *sys.argv]), "machine": machine, "model": "rmbg_isnet",
              "precision": None if server is None else engine_precision(args.repo),
              "images": IMAGES, "options": "{}", "first_latency_ms": round(latency * 1000, 1),
              "window": windows, "unstable_points": sum(not r["stable"] for rows in results.values() for r in rows),
              "results": results}
    (args.out / "perf.json").write_text(json.dumps(report, indent=2))
    plot(results, machine, args.out / "perf.png")
    print(json.dumps(results, indent=2))
    return 0


def plot(results: dict, machine: dict, path: Path) -> None:
    """Unstable points (best window only) have no percentiles: they are drawn hollow, at their mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def latency(rows: list[dict], q: str) -> list[float]:
        return [r.get(q, r["avg_ms"]) for r in rows]

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.6))
    for proto, color in (("grpc", "#37a"), ("http", "#c44")):
        rows = results[f"{proto}_concurrency"]
        x = [r["concurrency"] for r in rows]
        a.plot(x, [r["images_per_s"] for r in rows], "o-", color=color, label=proto)
        for q, style in (("p50_ms", "-"), ("p99_ms", ":")):
            b.plot(x, latency(rows, q), style, marker="o", color=color, label=f"{proto} {q[:3]}")
        unstable = [r for r in rows if not r["stable"]]
        if unstable:
            a.plot([r["concurrency"] for r in unstable], [r["images_per_s"] for r in unstable], "o", mfc="white",
                   color=color, label=f"{proto} not stable (best window)")
    a.set(xlabel="concurrency", ylabel="images / s", title="throughput vs concurrency")
    b.set(xlabel="concurrency", ylabel="latency ms", title="latency percentiles")
    rr = results["grpc_request_rate"]
    c.plot([r["request_rate"] for r in rr], latency(rr, "p50_ms"), "o-", label="p50")
    c.plot([r["request_rate"] for r in rr], latency(rr, "p99_ms"), "o:", label="p99")
    c.set(xlabel="offered request rate (req/s)", ylabel="latency ms", title="gRPC request-rate sweep")
    for ax in (a, b, c):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(describe(machine), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
