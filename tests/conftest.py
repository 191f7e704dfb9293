"""Shared fixtures: the ../shared fixtures, the eval set, the session's Triton server, and local HTTP
servers on 127.0.0.x for URL inputs, redirects, presigned-PUT uploads and webhooks."""

from __future__ import annotations

import csv
import http.server
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__import__("os").environ.get("RMBG_SHARED", ROOT.parent / "shared"))
EVAL = SHARED / "eval"
REFERENCE = SHARED / "reference"


@dataclass(frozen=True)
class EvalPair:
    id: str
    image: Path
    mask: Path
    width: int
    height: int
    category: str  # the manifest's category, e.g. "animal/fluffy dog"

    @property
    def group(self) -> str:
        """The category's first part (people, animal, plant, object, product, people+object)."""
        return self.category.split("/")[0]


# The edge band of the quality figures: pixels within this many pixels of the truth's edge.
EDGE_BAND_PX = 10


def ground_truth(mask_path: Path) -> np.ndarray:
    """A ground-truth mask as float32 0..1 (the alpha matte keeps its soft values)."""
    return np.asarray(Image.open(mask_path).convert("L")).astype(np.float32) / 255.0


def mask_quality(pred: np.ndarray, mask_path: Path) -> tuple[float, float]:
    """(MAE, IoU@0.5) of a 0..1 prediction against a ground-truth mask: the eval set's two figures."""
    gt = ground_truth(mask_path)
    mae = float(np.abs(pred - gt).mean())
    a, b = pred >= 0.5, gt > 128 / 255.0
    union = np.logical_or(a, b).sum()
    return mae, float(np.logical_and(a, b).sum() / union) if union else 1.0


def edge_band(gt: np.ndarray, width: int = EDGE_BAND_PX) -> np.ndarray:
    """Pixels at most ``width`` pixels (Euclidean) from the truth's edge, on either side; the
    truth is binarised as IoU does (> 128/255)."""
    import cv2

    fg = (gt > 128 / 255.0).astype(np.uint8)
    inside = cv2.distanceTransform(fg, cv2.DIST_L2, 5)  # to the nearest background pixel
    outside = cv2.distanceTransform(1 - fg, cv2.DIST_L2, 5)  # to the nearest foreground pixel
    return np.where(fg > 0, inside, outside) <= width


def edge_band_error(pred: np.ndarray, mask_path: Path, width: int = EDGE_BAND_PX) -> float:
    """Mean |pred - truth| within ``width`` pixels of the truth's edge (0 for a truth with no edge):
    where hair, fur, thin parts and halos show, which MAE over the whole photo dilutes."""
    gt = ground_truth(mask_path)
    band = edge_band(gt, width)
    return float(np.abs(pred[band] - gt[band]).mean()) if band.any() else 0.0


def quality_figures(pred: np.ndarray, mask_path: Path) -> dict[str, float]:
    """MAE, IoU@0.5 and the edge-band error of a 0..1 prediction: what the quality tools report."""
    mae, iou = mask_quality(pred, mask_path)
    return {"mae": mae, "iou": iou, "edge": edge_band_error(pred, mask_path)}


def eval_pairs() -> list[EvalPair]:
    with (EVAL / "manifest.csv").open() as f:
        return [
            EvalPair(r["id"], EVAL / r["image"], EVAL / r["mask"], int(r["width"]), int(r["height"]), r["category"])
            for r in csv.DictReader(f)
        ]


@pytest.fixture(scope="session")
def pairs() -> list[EvalPair]:
    if not EVAL.is_dir():
        pytest.fail(f"the shared eval set is missing at {EVAL} (set RMBG_SHARED)")
    return eval_pairs()


@pytest.fixture(scope="session")
def small_jpeg(pairs) -> bytes:
    """A real photo, small enough that tests stay fast (ECSSD, about 400x300)."""
    return next(p for p in pairs if p.id == "ecssd_0039").image.read_bytes()


# One real Triton server per test session, on free loopback ports, serving real IS-Net weights
# (tests/integration and the gateway's tests share it).
@pytest.fixture(scope="session")
def model_repository(tmp_path_factory) -> Path:
    from rmbg_export.repository import RepositorySettings, build_repo

    repo = tmp_path_factory.mktemp("model_repository")
    build_repo("isnet", "imgly-isnet", out=repo)  # the CPU default: int8 (quantised once, then cached)
    # BiRefNet: the lite definition with synthetic weights at 256 px in f32 keeps the suite fast.
    build_repo("birefnet", "synthetic", RepositorySettings(precision="f32"), out=repo, size=256,
               variant="birefnet-lite")
    return repo


@pytest.fixture(scope="session")
def triton(model_repository, tmp_path_factory):
    from rmbg_server.launcher import ServerConfig, TritonServer
    from rmbg_server.watchdog import StubWatchdog

    cfg = ServerConfig.on_free_ports(model_repository)
    log = tmp_path_factory.mktemp("logs") / "triton.log"
    server = TritonServer(cfg, log_file=log)
    server.start(timeout=180)
    watchdog = StubWatchdog(server.process.pid, model_repository, server.reload, interval=0.5)
    watchdog.start()
    server.watchdog = watchdog
    yield server
    watchdog.stop()
    server.stop()


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory) -> Path:
    """The tiny IS-Net with synthetic weights at 256 px: a Triton on it starts in seconds and answers in
    milliseconds, for tests about processes and plumbing (kill -9, replicas), not about masks."""
    from rmbg_export.repository import build_repo

    repo = tmp_path_factory.mktemp("tiny_repository")
    build_repo("isnet", "synthetic", out=repo, size=256, variant="isnet-tiny")
    return repo


class Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    seen: list[str] = []
    redirects: dict[str, str] = {}
    uploads: dict[str, tuple[str, bytes]] = {}
    posts: list[tuple[str, dict[str, str], bytes]] = []
    failures: dict[str, int] = {}

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        self.seen.append(path)
        if path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x" * 10)
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:  # the client gave up, as it should
                pass
            return
        if path == "/huge-undeclared":
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"y" * 65536)
            return
        body = self.files.get(path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        if self.path.startswith("/forbidden"):
            self.rfile.read(length)
            self.send_error(403)
            return
        self.uploads[self.path] = (self.headers.get("Content-Type"), self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):  # noqa: N802 - a webhook receiver: records each POST; answers 503 while failures[path] > 0
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        path = self.path.split("?")[0]
        self.posts.append((path, dict(self.headers), body))
        if self.failures.get(path, 0) > 0:
            self.failures[path] -= 1
            self.send_error(503)
            return
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def _serve(host: str):
    handler = type("H", (Handler,), {"files": {}, "seen": [], "uploads": {}, "redirects": {},
                                      "posts": [], "failures": {}})
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.base = f"http://{host}:{server.server_address[1]}"
    server.handler = handler
    return server


@pytest.fixture(scope="session")
def http_server():
    server = _serve("127.0.0.1")
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def other_loopback_server():
    """A second server on 127.0.0.2 (Linux routes all of 127.0.0.0/8 to loopback): a redirect target
    outside an allow-list of 127.0.0.1/32."""
    server = _serve("127.0.0.2")
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def loopback_policy():
    """The fetch rules with this machine's loopback allowed, as a test needs to reach its own servers."""
    from rmbg_hosted.fetch import FetchPolicy

    return FetchPolicy.allowing(["127.0.0.1/32"], timeout_s=10.0)


@pytest.fixture(scope="session")
def redis_server():
    """One real redis-server per session (Debian's package), on a free loopback port, no persistence."""
    from rmbg_server.launcher import LaunchError
    from tests.harness.cluster import RedisServer, find_redis_server

    try:
        find_redis_server()
    except LaunchError as e:
        pytest.skip(f"the Redis backend cannot be tested here: {e}")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server) -> str:
    """The session server, emptied: each test starts from no jobs and no files."""
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url
