"""`make perf-gateway`: what the gateway adds over a direct gRPC call, on a 1-megapixel image.

One Triton server and one `rmbg gateway` process on this machine, both on loopback. The engine is
BiRefNet-lite definition (Swin-T) at 256 px with synthetic weights, so the model step is short and the
figure is about the gateway, not the model; the image is 1024x1024 (1 MP) so decode, encode and
the bytes on the wire are real. The same request goes both ways:
  direct:  tritonclient gRPC, IMAGE = the JPEG bytes, OPTIONS {} -> PNG cut-out (RGBA, 1 MP);
  gateway: POST /v1 {"taskType": "removeBackground", "inputs": {"image": <base64>},
           "outputType": "base64Data"} -> the same PNG in base64, JSON.
Requests alternate (direct, gateway, in random order per pair) so both see the same machine
state; the overhead is the per-pair difference, reported as median and p90. Request bodies are
built before timing (a client that already holds base64 pays nothing more). Then throughput at
concurrency 1..16 for both paths. Writes perf/results/gateway.json and gateway.png.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from machine import describe, machine_info

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"
RESULTS = ROOT / "perf" / "results"


def one_megapixel_jpeg() -> bytes:
    photo = next((EVAL / "images").glob("ecssd_*.jpg"))
    image = Image.open(photo).convert("RGB").resize((1024, 1024), Image.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# The default cut-out (1 MP RGBA PNG, about 1.2 MB: the most bytes to carry) and the mask alone.
KINDS = {"cutout": {}, "mask": {"returnOnlyMask": True}}


def summary(direct_ms: list[float], gateway_ms: list[float]) -> dict[str, dict[str, float]]:
    diff = [g - d for d, g in zip(direct_ms, gateway_ms, strict=True)]
    return {"direct_ms": {"median": statistics.median(direct_ms), "p90": pct(direct_ms, 90)},
            "gateway_ms": {"median": statistics.median(gateway_ms), "p90": pct(gateway_ms, 90)},
            "overhead_ms": {"median": statistics.median(diff), "p90": pct(diff, 90), "target": 5.0}}


class Direct:
    """Direct gRPC to the ensemble, inputs built once."""

    def __init__(self, url: str, image: bytes, options: dict) -> None:
        import tritonclient.grpc as grpc

        from rmbg_client.client import build_request

        self.client = grpc.InferenceServerClient(url)
        self.inputs, self.outputs = build_request(grpc, image, options, None)

    def __call__(self) -> int:
        response = self.client.infer("rmbg_isnet", self.inputs, outputs=self.outputs)
        return len(response.as_numpy("IMAGE_OUT").reshape(-1)[0])


class ViaGateway:
    """POST /v1 with a pre-built body per request (a taskUUID is single-use)."""

    def __init__(self, url: str, image: bytes, options: dict) -> None:
        self.client = httpx.Client(base_url=url, timeout=120)
        self.template = json.dumps({"taskType": "removeBackground", "taskUUID": "UUID", "model": "isnet",
                                    "outputType": "base64Data", "settings": options,
                                    "inputs": {"image": base64.b64encode(image).decode()}}).encode()
        self.lock = threading.Lock()
        self.bodies: list[bytes] = []

    def prepare(self, n: int) -> None:
        self.bodies += [self.template.replace(b'"UUID"', f'"{uuid.uuid4()}"'.encode()) for _ in range(n)]

    def __call__(self) -> int:
        with self.lock:
            body = self.bodies.pop()
        response = self.client.post("/v1", content=body, headers={"Content-Type": "application/json"})
        if response.status_code != 200:
            raise RuntimeError(f"gateway answered {response.status_code}: {response.text[:300]}")
        return len(response.content)


def _metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))


def inside_gateway(base: str, earlier: dict) -> dict[str, float]:
    """From the gateway's own histograms: mean time per /v1 request inside the app, and how much of it
    was the Triton call (cumulative since start, so earlier kinds are subtracted)."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    totals = {"request_s": _metric(text, 'rmbg_gateway_request_seconds_sum{method="POST",route="/v1"}'),
              "count": _metric(text, 'rmbg_gateway_request_seconds_count{method="POST",route="/v1"}'),
              "triton_s": _metric(text, "rmbg_gateway_triton_seconds_sum")}
    before = {k: sum(e["_totals"][k] for e in earlier.values()) for k in totals}
    d = {k: totals[k] - before[k] for k in totals}
    return {"_totals": d, "in_app_ms_mean": 1000 * d["request_s"] / d["count"],
            "in_app_minus_triton_ms_mean": 1000 * (d["request_s"] - d["triton_s"]) / d["count"]}


def timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return (time.perf_counter() - t0) * 1000


def throughput(make_call, concurrency: int, requests: int) -> float:
    calls = [make_call() for _ in range(concurrency)]
    per = max(1, requests // concurrency)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda c: [c() for _ in range(per)], calls))
    return per * concurrency / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--requests", type=int, default=32, help="per concurrency level and path")
    parser.add_argument("--out", type=Path, default=RESULTS / "gateway.json")
    a = parser.parse_args()

    from rmbg_export.repository import build_repo
    from rmbg_server.launcher import ServerConfig, TritonServer, free_port
    from rmbg_server.watchdog import StubWatchdog

    work = Path(tempfile.mkdtemp(prefix="rmbg-gw-perf-"))
    repo = work / "repo"
    build_repo("isnet", "synthetic", out=repo, size=256, variant="isnet-tiny")
    triton = TritonServer(ServerConfig.on_free_ports(repo), log_file=work / "triton.log")
    triton.start(timeout=300)
    watchdog = StubWatchdog(triton.process.pid, repo, triton.reload, interval=0.5)
    watchdog.start()
    port = free_port()
    gateway = subprocess.Popen([str(Path(sys.executable).parent / "rmbg"), "-q", "gateway", "--port", str(port),
                                "--triton", triton.grpc_url, "--data-dir", str(work / "data"),
                                "--max-inflight", "64"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        image = one_megapixel_jpeg()
        load_before = os.getloadavg()
        pairs, sizes, split = {}, {}, {}
        for kind, options in KINDS.items():
            direct, via = Direct(triton.grpc_url, image, options), ViaGateway(base, image, options)
            via.prepare(a.pairs + a.warmup)
            sizes[kind] = {"png_out_bytes": direct(), "gateway_response_bytes": via()}  # also checks both answer
            for _ in range(a.warmup - 1):
                direct(), via()
            d_ms, g_ms = [], []
            for _ in range(a.pairs):
                order = [("d", direct), ("g", via)]
                random.shuffle(order)
                got = {name: timed(call) for name, call in order}
                d_ms.append(got["d"])
                g_ms.append(got["g"])
            pairs[kind] = (d_ms, g_ms)
            split[kind] = inside_gateway(base, split)
        rates: dict[str, dict[int, float]] = {"direct": {}, "gateway": {}}
        options = KINDS["cutout"]
        via = ViaGateway(base, image, options)
        for c in a.concurrency:
            via.prepare(max(1, a.requests // c) * c)
            rates["gateway"][c] = throughput(lambda: via, c, a.requests)
            rates["direct"][c] = throughput(lambda: Direct(triton.grpc_url, image, options), c, a.requests)
            print(f"concurrency {c}: direct {rates['direct'][c]:.1f}/s, gateway {rates['gateway'][c]:.1f}/s",
                  flush=True)
        load_after = os.getloadavg()
    finally:
        gateway.terminate()
        gateway.wait(30)
        watchdog.stop()
        triton.stop()

    report = {
        "command": " ".join(["python", "perf/gateway_overhead.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "load_average_1_5_15": {"before": load_before, "after": load_after},
        "engine": "isnet-tiny at 256 px, synthetic weights (a short model step keeps the figure about the gateway)",
        "image": {"size": [1024, 1024], "jpeg_bytes": len(image)},
        "request": "POST /v1, inputs.image base64, outputType base64Data vs tritonclient gRPC with the JPEG bytes",
        "pairs": a.pairs,
        "kinds": {kind: {"settings": KINDS[kind], **sizes[kind], **summary(*pairs[kind]), **split[kind]}
                  for kind in KINDS},
        "overhead_ms": summary(*pairs["cutout"])["overhead_ms"],
        "throughput_per_s": rates,
        "stub_restarts": [m for _, m in watchdog.restarts],
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, a.out.with_suffix(".png"))
    print(json.dumps({k: report[k] for k in ("machine", "kinds")}, indent=2))
    return 0


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rates in report["throughput_per_s"].items():
        levels = sorted(int(c) for c in rates)
        ax.plot(levels, [rates[c] if c in rates else rates[str(c)] for c in levels], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("requests/s (1 MP image)")
    o = report["overhead_ms"]
    ax.set_title(f"gateway overhead: median {o['median']:.1f} ms, p90 {o['p90']:.1f} ms\n{describe(report['machine'])}",
                 fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
