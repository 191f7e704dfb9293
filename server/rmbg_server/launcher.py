"""Start Triton on this machine: the NGC container's ``tritonserver`` or the one in nvidia-pytriton.

Measured facts this module encodes (README, "Development"): the Python-backend stub must sit
in ``backends/python/`` and match the running Python; it finds site-packages from the first
``python3`` on PATH (so the venv's ``bin`` goes first); copied out of the wheel it needs the
wheel's bundled libraries on LD_LIBRARY_PATH; it links against the system ``libpythonX.Y``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rmbg_server import reaper
from rmbg_server.hidden_args import HiddenArgsUnavailable, popen_hiding
from rmbg_server.shm import stub_regions, sweep_orphan_regions

log = logging.getLogger(__name__)
BUILD_HINT = "rmbg build-repo --model isnet --weights imgly-isnet --out {repo}  (or: make repo)"


class LaunchError(RuntimeError):
    """The server could not be started; the message says what to install or change."""


def _engine_files_needed(text: str) -> list[str]:
    """The files a model's version directory must hold, from its config.pbtxt text.

    Our Python engines name their weights in an ``engine_file`` parameter; native platforms use
    ``default_model_filename`` or the platform's default name. Ensembles need nothing.
    """
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse(text, mc.ModelConfig())
    if config.platform == "ensemble":
        return []
    default = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx"}.get(config.platform)
    if default:
        return [config.default_model_filename or default]
    engine = config.parameters["engine_file"].string_value if "engine_file" in config.parameters else ""
    if engine.endswith(".xml"):  # an OpenVINO IR: its weights sit beside it
        return ["model.py", engine, engine.removesuffix(".xml") + ".bin"]
    return ["model.py"] + ([engine] if engine else [])


def check_repository(repo: Path) -> None:
    """Refuse a repository Triton would start on and then fail to load, naming the fix."""
    configs = sorted(repo.glob("*/config.pbtxt")) if repo.is_dir() else []
    if not configs:
        raise LaunchError(f"model repository {repo} has no models; build one first: {BUILD_HINT.format(repo=repo)}")
    problems = []
    for config in configs:
        version = config.parent / "1"
        try:
            needed = _engine_files_needed(config.read_text())
        except Exception as exc:  # noqa: BLE001 - text_format.ParseError: say which file, and rebuild
            problems.append(f"{config} does not parse ({str(exc)[:200]})")
            continue
        missing = [f for f in needed if not (version / f).is_file()]
        if missing:
            problems.append(f"{config.parent.name} lacks {', '.join(str(version / f) for f in missing)}")
    if problems:
        raise LaunchError(f"model repository {repo} is incomplete: {'; '.join(problems)}. "
                          f"Rebuild it: {BUILD_HINT.format(repo=repo)}")


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    backend_dir: Path | None  # None: the binary's default (NGC: /opt/tritonserver/backends)
    library_dirs: tuple[Path, ...] = ()


def _python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _state_dir() -> Path:
    base = os.environ.get("RMBG_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rmbg")
    path = Path(base) / "triton"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_libpython(stub: Path) -> None:
    """The stub links the system libpython; name the package when it is missing."""
    try:
        out = subprocess.run(["ldd", str(stub)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return  # no ldd: let the server report it
    for line in out.splitlines():
        if "libpython" in line and "not found" in line:
            lib = line.split()[0]
            tag = _python_tag()
            raise LaunchError(
                f"{lib} is missing: the Triton Python-backend stub needs the shared Python "
                f"library. Install it with 'apt-get install libpython{tag}' (Debian/Ubuntu) "
                f"or 'dnf install python{tag.replace('.', '')}-libs' (RHEL/Fedora)."
            )


def find_triton() -> TritonInstall:
    """``tritonserver`` on PATH (NGC container) wins; else the server inside nvidia-pytriton."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstall(Path(on_path), None)
    try:
        import pytriton
    except ImportError:
        raise LaunchError(
            "no tritonserver on PATH and nvidia-pytriton is not installed: "
            "pip install 'rmbg-triton[server]' (or run inside the NGC tritonserver container)"
        ) from None
    root = Path(pytriton.__file__).parent / "tritonserver"
    stub = root / "python_backend_stubs" / _python_tag() / "triton_python_backend_stub"
    if not stub.exists():
        raise LaunchError(f"nvidia-pytriton has no Python-backend stub for Python {_python_tag()} ({stub})")
    check_libpython(stub)
    # Copy the Python backend next to the stub for this Python (the wheel keeps them apart).
    backends = _state_dir() / f"backends-py{_python_tag()}"
    python_backend = backends / "python"
    src = root / "backends" / "python"
    marker = python_backend / ".source"
    source_id = f"{src}:{stub.stat().st_mtime_ns}"
    if not marker.exists() or marker.read_text() != source_id:
        shutil.rmtree(python_backend, ignore_errors=True)
        shutil.copytree(src, python_backend, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, python_backend / "triton_python_backend_stub")
        marker.write_text(source_id)
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return TritonInstall(root / "bin" / "tritonserver", backends, (libs,) if libs.is_dir() else ())


@dataclass
class ServerConfig:
    model_repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    log_verbose: int = 0
    # Python-backend shared memory: start big enough for a 50-megapixel RGBA hand-off.
    shm_default_bytes: int = 64 * 1024 * 1024
    shm_growth_bytes: int = 64 * 1024 * 1024
    # Model load/unload, shared-memory registration, logging and tracing need this header
    # value (a fresh random one per start, known to the launcher's watchdog only), so a
    # client that can reach the ports can run inference but cannot unload models or map
    # shared memory. Set RMBG_ADMIN_KEY to choose it (e.g. for an operator's tooling).
    # tritonserver's command line shows "<hidden>" in its place (rmbg_server.hidden_args).
    admin_key: str = field(default_factory=lambda: os.environ.get("RMBG_ADMIN_KEY") or secrets.token_hex(16))
    extra_args: list[str] = field(default_factory=list)

    @classmethod
    def on_free_ports(cls, model_repository: Path, **kwargs) -> ServerConfig:
        """Loopback config with three free ports (tests, benchmarks, demos beside a running server)."""
        http, grpc, metrics = free_ports(3)
        return cls(model_repository, http_port=http, grpc_port=grpc, metrics_port=metrics, **kwargs)

    def ports(self) -> list[tuple[str, int, str]]:
        """(host, port, flag) of each port Triton listens on; the flags are tritonserver's and `rmbg serve`'s."""
        return [(self.host, self.http_port, "--http-port"), (self.host, self.grpc_port, "--grpc-port"),
                (self.host, self.metrics_port, "--metrics-port")]


_handed_out: deque[int] = deque(maxlen=4096)
_handing_out = threading.Lock()


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports nothing listens on now, none of them handed out before by this process.

    A port bound and closed at once can come straight back from the next bind to port 0 (measured here:
    7 of 20,000 triples had a repeat), and a Triton given one port for HTTP and gRPC exits during start-up.
    Holding the sockets together keeps one call's ports apart; remembering them keeps apart the servers
    this process configures before any of them binds (a cluster started in parallel).
    """
    ports: list[int] = []
    held: list[socket.socket] = []
    with _handing_out:
        try:
            while len(ports) < count:
                s = socket.socket()
                held.append(s)
                s.bind((host, 0))
                if (port := s.getsockname()[1]) not in _handed_out:
                    ports.append(port)
        finally:
            for s in held:
                s.close()
        _handed_out.extend(ports)
    return ports


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port``: a bind as our servers make it (SO_REUSEADDR) fails.

    Without this check a second server started on the ports of a running one took the running one's
    "ready" for its own, and its stubs outlived the start that failed after it.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror:
        return False  # the server itself reports a host it cannot resolve
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def check_ports_free(ports: Iterable[tuple[str, int, str]]) -> None:
    """Refuse, before anything starts, ports something already listens on; every busy one is named."""
    busy = [f"{port} on {host} ({flag})" for host, port, flag in ports if port and port_in_use(host, port)]
    if busy:
        raise LaunchError(f"port{'s' if len(busy) > 1 else ''} {', '.join(busy)} already in use (another "
                          "rmbg serve, rmbg up or Triton?); stop that server or choose free ports with the flags named")


def server_command(install: TritonInstall, cfg: ServerConfig) -> list[str]:
    cmd = [
        str(install.binary),
        f"--model-repository={cfg.model_repository.resolve()}",
        "--model-control-mode=explicit",
        "--load-model=*",
        f"--http-address={cfg.host}", f"--http-port={cfg.http_port}",
        f"--grpc-address={cfg.host}", f"--grpc-port={cfg.grpc_port}",
        f"--metrics-address={cfg.host}", f"--metrics-port={cfg.metrics_port}",
        "--allow-gpu-metrics=false",
        f"--log-verbose={cfg.log_verbose}",
        "--exit-timeout-secs=15",
        f"--backend-config=python,shm-default-byte-size={cfg.shm_default_bytes}",
        f"--backend-config=python,shm-growth-byte-size={cfg.shm_growth_bytes}",
        "--backend-config=python,stub-timeout-seconds=60",
        f"--http-restricted-api=model-repository,shared-memory,logging,trace:admin-key={cfg.admin_key}",
        f"--grpc-restricted-protocol=model-repository,shared-memory,logging,trace:admin-key={cfg.admin_key}",
    ]
    if install.backend_dir is not None:
        cmd.append(f"--backend-directory={install.backend_dir}")
    return cmd + cfg.extra_args


def server_env(install: TritonInstall) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    if install.library_dirs:
        extra = os.pathsep.join(str(p) for p in install.library_dirs)
        env["LD_LIBRARY_PATH"] = extra + (os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def http_json(url: str, method: str = "GET", timeout: float = 5.0,
              headers: dict[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if body else {}
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, {"error": body.decode(errors="replace")}


class TritonServer:
    """A supervised tritonserver process: start, wait until ready, reload models, stop."""

    def __init__(self, cfg: ServerConfig, log_file: Path | None = None) -> None:
        check_repository(cfg.model_repository)
        self.cfg = cfg
        self.install = find_triton()
        self.log_file = log_file
        self.process: subprocess.Popen | None = None
        self._reaper: subprocess.Popen | None = None
        self._log_handle = None

    @property
    def http_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.cfg.host}:{self.cfg.grpc_port}"

    def start(self, timeout: float = 120.0) -> None:
        """Start and wait until ready; a start that fails or is interrupted stops what it began.

        The server ends with this process however it ends (``rmbg_server.reaper``).
        """
        check_ports_free(self.cfg.ports())
        sweep_orphan_regions()  # a server killed earlier on this machine (or pod) left its RAM behind
        cmd = server_command(self.install, self.cfg)
        if self.log_file is not None:
            self._log_handle = self.log_file.open("ab")
        popen = {"env": server_env(self.install), "stdout": self._log_handle, "stderr": subprocess.STDOUT,
                 "start_new_session": True}
        try:  # the admin key goes through the environment (owner-only), never the visible command line
            self.process = popen_hiding(cmd, self.cfg.admin_key, **popen)
        except HiddenArgsUnavailable as exc:
            log.warning("cannot hide the admin key from other local users' process lists (%s)", exc)
            self.process = subprocess.Popen(cmd, **popen)
        self._reaper = reaper.watch(self.process.pid, self._log_handle)
        try:
            self.wait_ready(timeout)
        except BaseException:  # Ctrl-C included: a half-started server would hold the ports
            self.stop()
            raise

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                where = f"; see {self.log_file}" if self.log_file else ""
                raise LaunchError(f"tritonserver exited with code {self.process.returncode} during start-up{where}")
            try:
                status, _ = http_json(f"{self.http_url}/v2/health/ready", timeout=2)
                if status == 200:
                    self._check_identity()
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise LaunchError(f"tritonserver not ready after {timeout:.0f} s")

    def _check_identity(self) -> None:
        """The server that answered is the one started here: only it knows this start's admin key."""
        status, _ = http_json(f"{self.http_url}/v2/repository/index", method="POST", headers=self._admin())
        if status != 200:
            raise LaunchError(f"{self.http_url} answers, but it is another server (HTTP {status} with this start's "
                              "admin key); stop that server or choose free ports with --http-port")

    def _admin(self) -> dict[str, str]:
        return {"admin-key": self.cfg.admin_key}

    def models(self) -> list[dict]:
        _, index = http_json(f"{self.http_url}/v2/repository/index", method="POST", headers=self._admin())
        return index if isinstance(index, list) else []

    def reload(self, model: str) -> None:
        """Unload, then load: new instances with new stubs (about 1.5-2.5 s here).

        A plain load of an unchanged, loaded model is a no-op in Triton, so the unload is
        needed. It also takes the dependent ensemble down for that window; clients see
        "unknown model" or "stub not healthy" errors, which RmbgClient retries.
        """
        base = f"{self.http_url}/v2/repository/models/{model}"
        http_json(f"{base}/unload", method="POST", timeout=60, headers=self._admin())
        status, body = http_json(f"{base}/load", method="POST", timeout=120, headers=self._admin())
        if status != 200:
            raise LaunchError(f"reloading {model} failed: {body}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        regions = stub_regions(self.process.pid)  # freed below if a kill or crash left them behind
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Triton drains in-flight requests on SIGINT
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of its process group: the server after the timeout, or stubs it left behind
        # (a server stopped during start-up dies at once, and a stub still initialising ignores SIGTERM).
        reaper.kill_group(self.process.pid)
        self.process.wait()
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
            self._reaper = None
        sweep_orphan_regions(min_age_s=2.0, known=regions)
        if self._log_handle:
            self._log_handle.close()
            self._log_handle = None
        return self.process.returncode

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
