"""Real processes for a cluster on one machine: redis-server, Triton servers, gateway replicas, a webhook receiver.

Used by the multi-replica tests and by ``make cluster-demo``. Every process binds loopback on a
free port, so several of these can run beside other servers on the same machine.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rmbg_server.launcher import LaunchError, ServerConfig, TritonServer, free_port

log = logging.getLogger(__name__)
REDIS_HINT = "install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)"


def find_redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise LaunchError(f"redis-server is not on PATH; {REDIS_HINT}")
    return binary


class RedisServer:
    """A private redis-server: loopback, free port, no snapshots unless ``appendonly`` is asked for."""

    def __init__(self, data_dir: Path | None = None, *, port: int | None = None, appendonly: bool = False,
                 log_file: Path | None = None) -> None:
        self.binary = find_redis_server()
        self.port = port or free_port()
        self.appendonly = appendonly
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="rmbg-redis-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
                "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
                "--daemonize", "no", "--loglevel", "warning",
                "--logfile", str(self.log_file) if self.log_file else ""]

    def start(self, timeout: float = 15.0) -> RedisServer:
        import redis

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                    raise LaunchError(f"redis-server exited with code {self.process.returncode}: {err.strip()}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise LaunchError(f"redis-server on port {self.port} did not answer PING within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rmbg_command() -> list[str]:
    """The ``rmbg`` console script of this environment (works without activating the venv)."""
    script = Path(sys.executable).parent / "rmbg"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rmbg_cli.main"]


def http_status(url: str, timeout: float = 2.0, *, ca: Path | None = None) -> int | None:
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def kill9(process: subprocess.Popen) -> None:
    """SIGKILL a process started with ``start_new_session`` and everything in its group (Triton's stubs)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


class GatewayProcess:
    """``rmbg gateway`` as a real process on a free loopback port, ready once ``/readyz`` answers 200."""

    def __init__(self, triton: Sequence[str], data_dir: Path, *, redis_url: str | None = None,
                 port: int | None = None, args: Sequence[str] = (), log_file: Path | None = None,
                 env: dict[str, str] | None = None, ca: Path | None = None) -> None:
        self.triton = list(triton)
        self.data_dir = Path(data_dir)
        self.redis_url = redis_url
        self.port = port or free_port()
        self.args = list(args)
        self.log_file = log_file
        self.env = env
        self.ca = ca  # with --tls-cert in args: the CA that signed it (the URL is then https)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if '--tls-cert' in self.args else 'http'}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [*rmbg_command(), "gateway", "--host", "127.0.0.1", "--port", str(self.port),
               "--triton", ",".join(self.triton), "--data-dir", str(self.data_dir)]
        return cmd + (["--redis", self.redis_url] if self.redis_url else []) + self.args

    def start(self, timeout: float = 60.0, *, wait_for: str = "/readyz") -> GatewayProcess:
        """Start (or, after ``kill``, restart on the same port and data directory) and wait until
        ``wait_for`` answers 200 (``/healthz`` for a gateway whose Triton is down on purpose)."""
        env = {**os.environ, **(self.env or {})}
        with open(self.log_file or os.devnull, "ab") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LaunchError(f"rmbg gateway exited with code {self.process.returncode} during start-up:\n"
                                  f"{self.log_text()[-3000:]}")
            if http_status(f"{self.url}{wait_for}", ca=self.ca) == 200:
                return self
            time.sleep(0.1)
        self.kill()
        raise LaunchError(f"rmbg gateway on port {self.port} was not ready within {timeout:.0f} s:\n"
                          f"{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file and self.log_file.exists() else ""

    def kill(self) -> None:
        """kill -9: no shutdown handler runs, leases stay with the dead process until they expire."""
        if self.process is not None:
            kill9(self.process)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                kill9(self.process)
        return self.process.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Delivery:
    at: float              # time.monotonic() when it arrived
    headers: dict[str, str]
    raw: bytes


class WebhookReceiver:
    """A local HTTP endpoint for webhooks: answers ``statuses`` in turn (the last repeats), records each POST."""

    def __init__(self, statuses: Sequence[int | tuple[int, dict[str, str]]] = (200,), *,
                 path: str = "/hooks/rmbg?tenant=7", host: str = "127.0.0.1", port: int = 0) -> None:
        self.statuses = list(statuses)
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.deliveries.append(Delivery(time.monotonic(), dict(self.headers), raw))
                    scripted = receiver.statuses[min(len(receiver.deliveries), len(receiver.statuses)) - 1]
                status, headers = scripted if isinstance(scripted, tuple) else (scripted, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalCluster:
    """Redis, ``tritons`` Triton servers and ``gateways`` gateway replicas sharing jobs and files through Redis.

    Every gateway talks to every Triton (``--triton a,b``); each has its own ``--data-dir`` so that
    nothing is shared but through Redis, as on separate machines.
    """

    def __init__(self, model_repository: Path, work_dir: Path, *, tritons: int = 2, gateways: int = 2,
                 gateway_args: Sequence[str] = ()) -> None:
        self.model_repository = Path(model_repository)
        self.work_dir = Path(work_dir)
        self.n_tritons, self.n_gateways = tritons, gateways
        self.gateway_args = list(gateway_args)
        self.redis: RedisServer | None = None
        self.tritons: list[TritonServer] = []
        self.gateways: list[GatewayProcess] = []

    def start(self, timeout: float = 180.0) -> LocalCluster:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.redis = RedisServer(self.work_dir / "redis").start()
            self.tritons = [TritonServer(ServerConfig.on_free_ports(self.model_repository),
                                         log_file=self.work_dir / f"triton{i}.log") for i in range(self.n_tritons)]
            with ThreadPoolExecutor(len(self.tritons)) as pool:  # start side by side: start-up is mostly waiting
                list(pool.map(lambda t: t.start(timeout=timeout), self.tritons))
            for i in range(self.n_gateways):
                self.add_gateway(timeout=timeout, name=f"gateway{i}")
        except BaseException:
            self.stop()
            raise
        return self

    def add_gateway(self, *, timeout: float = 60.0, name: str | None = None, port: int | None = None) -> GatewayProcess:
        """Start one more replica (or a replacement on a dead one's ``port``)."""
        assert self.redis is not None
        name = name or f"gateway{len(self.gateways)}"
        gateway = GatewayProcess([t.grpc_url for t in self.tritons], self.work_dir / name, redis_url=self.redis.url,
                                 port=port, args=self.gateway_args, log_file=self.work_dir / f"{name}.log")
        self.gateways.append(gateway)
        return gateway.start(timeout)

    def warm_up(self, image: bytes, model: str = "isnet") -> None:
        """One removal straight on each Triton: a test of where the load goes is not one of first-call cost
        (a cold Triton answered none of the first 12 requests of a kill test while the warm one did)."""
        from rmbg_client import RmbgClient

        for triton in self.tritons:
            if triton.process is not None and triton.process.poll() is None:
                with RmbgClient(triton.grpc_url, model=model) as client:
                    client.remove(image)

    def triton_answered(self, i: int) -> int:
        """How many ensemble requests Triton ``i`` answered successfully (its own Prometheus count)."""
        cfg = self.tritons[i].cfg
        with urllib.request.urlopen(f"http://{cfg.host}:{cfg.metrics_port}/metrics", timeout=5) as resp:
            lines = resp.read().decode().splitlines()
        return int(sum(float(line.rpartition(" ")[2]) for line in lines
                       if line.startswith("nv_inference_request_success{") and 'model="rmbg_' in line))

    def kill_triton(self, i: int) -> int:
        """kill -9 Triton ``i`` (and its stubs); returns how many requests it had answered until then."""
        process = self.tritons[i].process
        assert process is not None
        answered = self.triton_answered(i)
        kill9(process)
        return answered

    def stop(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        for triton in self.tritons:
            if triton.process is not None:
                triton.stop()
        if self.redis is not None:
            self.redis.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
