"""`make perf`: perf_analyzer load tests of the rmbg ensemble over gRPC and HTTP.

Installs perf_analyzer itself (the tritonclient 2.48.0 manylinux1 wheel carries the binary;
newer wheels need glibc 2.38), with Debian's libb64 unpacked next to it (no root needed) and
the libcudart copy inside nvidia-pytriton under the name it links against. Writes
``--input-data`` from eval photos (BYTES as base64 with the 4-byte little-endian length in
front), runs concurrency and request-rate sweeps, and stores perf/results/perf_*.{json,csv,png}.
"""

from __future__ import annotations

import argparse
import base64
import csv
import glob
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

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


def run(binary: Path, env: dict, url: str, protocol: str, data: Path, csv_out: Path, sweep: list[str],
        window_ms: int) -> list[dict]:
    cmd = [str(binary), "-m", "rmbg_isnet", "-u", url, "-i", protocol, "--input-data", str(data), "-b", "1",
           "--measurement-interval", str(window_ms), "--stability-percentage", "30", "--max-trials", "8",
           "-f", str(csv_out), *sweep]
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"perf_analyzer failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print("\n".join(line for line in proc.stdout.splitlines() if "throughput" in line.lower()), flush=True)
    return read_csv(csv_out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grpc-url", help="HOST:PORT of a running server (default: start one)")
    ap.add_argument("--http-url")
    ap.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    ap.add_argument("--concurrency", default="1:3:1")
    ap.add_argument("--request-rates", default="0.4:1.3:0.4")
    ap.add_argument("--window-ms", type=int, default=8000)
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
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "perf_input_data.json"
    write_input_data(data, "{}")
    results: dict[str, list[dict]] = {}
    try:
        for protocol, url in (("grpc", args.grpc_url), ("http", args.http_url)):
            results[f"{protocol}_concurrency"] = run(binary, env, url, protocol, data,
                                                     args.out / f"perf_{protocol}_concurrency.csv",
                                                     ["--concurrency-range", args.concurrency], args.window_ms)
        results["grpc_request_rate"] = run(binary, env, args.grpc_url, "grpc", data,
                                           args.out / "perf_grpc_request_rate.csv",
                                           ["--request-rate-range", args.request_rates], args.window_ms)
    finally:
        if server is not None:
            server.stop()
        data.unlink(missing_ok=True)  # eval images stay out of the repository
    report = {"command": " ".join(["python", *sys.argv]), "machine": platform.platform(), "cpus": os.cpu_count(),
              "model": "rmbg_isnet", "images": IMAGES, "options": "{}", "results": results}
    (args.out / "perf.json").write_text(json.dumps(report, indent=2))
    plot(results, args.out / "perf.png")
    print(json.dumps(results, indent=2))
    return 0


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.6))
    for proto, color in (("grpc", "#37a"), ("http", "#c44")):
        rows = results[f"{proto}_concurrency"]
        a.plot([r["concurrency"] for r in rows], [r["images_per_s"] for r in rows], "o-", color=color, label=proto)
        for q, style in (("p50_ms", "-"), ("p99_ms", ":")):
            b.plot([r["concurrency"] for r in rows], [r[q] for r in rows], style, marker="o", color=color,
                   label=f"{proto} {q[:3]}")
    a.set(xlabel="concurrency", ylabel="images / s", title="throughput vs concurrency")
    b.set(xlabel="concurrency", ylabel="latency ms", title="latency percentiles")
    rr = results["grpc_request_rate"]
    c.plot([r["request_rate"] for r in rr], [r["p50_ms"] for r in rr], "o-", label="p50")
    c.plot([r["request_rate"] for r in rr], [r["p99_ms"] for r in rr], "o:", label="p99")
    c.set(xlabel="offered request rate (req/s)", ylabel="latency ms", title="gRPC request-rate sweep")
    for ax in (a, b, c):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
