"""Real processes for a cluster on one machine: redis-server (and, below, gateways beside Tritons).

Used by the multi-replica tests and by ``make cluster-demo``. Every process binds loopback on a
free port, so several of these can run beside other servers on the same machine.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from rmbg_server.launcher import LaunchError, free_port

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
