"""``rmbg serve``: Triton with the model repository, a stub watchdog, clean stop on Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from rmbg_cli.exits import EXIT_FAILED, EXIT_OK
from rmbg_cli.extras import require

log = logging.getLogger("rmbg.serve")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    s = sub.add_parser("serve", help="start Triton with the model repository (Ctrl-C stops)")
    add_triton_flags(s)
    return s


def add_triton_flags(s: argparse.ArgumentParser, *, host: bool = True) -> None:
    s.add_argument("--model-repository", default="model_repository", type=Path, metavar="DIR",
                   help="the models to serve, as 'rmbg build-repo' (or make repo) writes them "
                        "(default: %(default)s)")
    if host:
        s.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s, loopback only)")
    s.add_argument("--http-port", type=int, default=8000, help="Triton's HTTP/REST port (default: %(default)s)")
    s.add_argument("--grpc-port", type=int, default=8001, help="Triton's gRPC port (default: %(default)s)")
    s.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default: %(default)s)")
    s.add_argument("--log-file", type=Path, help="write the server log here (default: the terminal)")


def start_server(cfg, log_file: Path | None, command: str = "serve",
                 also_free: Iterable[tuple[str, int, str]] = ()):
    """Triton with the watchdog that reloads crashed stubs; raises LaunchError with what to fix.

    Every port must be free before anything starts: Triton's, and ``also_free`` ((host, port, flag), such
    as ``rmbg up``'s gateway port), so a busy one is a single error naming its flag and nothing is left
    behind. A start that fails or is interrupted (Ctrl-C while waiting for ready) stops the process it
    began, and the server ends with this process however it ends (``rmbg_server.reaper``).
    """
    launcher = require("rmbg_server.launcher", "server", command)
    watchdog_mod = require("rmbg_server.watchdog", "server", command)
    launcher.check_ports_free([*cfg.ports(), *also_free])
    server = launcher.TritonServer(cfg, log_file=log_file)
    log.info("starting Triton (%s) on %s ...", server.install.binary, cfg.host)
    server.start()
    assert server.process is not None
    watchdog = watchdog_mod.StubWatchdog(server.process.pid, cfg.model_repository, server.reload)
    watchdog.start()
    return server, watchdog


def start_triton(a: argparse.Namespace, host: str, also_free: Iterable[tuple[str, int, str]] = ()):
    """``start_server`` on the ports of ``a`` (the flags of ``add_triton_flags``)."""
    launcher = require("rmbg_server.launcher", "server", "serve")
    cfg = launcher.ServerConfig(a.model_repository, host, a.http_port, a.grpc_port, a.metrics_port)
    return start_server(cfg, a.log_file, also_free=also_free)


def ready_models(server) -> list[str]:
    return sorted(m["name"] for m in server.models() if m.get("state") == "READY")


def run(a: argparse.Namespace) -> int:
    launcher = require("rmbg_server.launcher", "server", "serve")
    try:
        server, watchdog = start_triton(a, a.host)
    except launcher.LaunchError as exc:
        print(f"rmbg serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"ready: gRPC {server.grpc_url}  HTTP {server.http_url}  metrics http://{a.host}:{a.metrics_port}/metrics")
    print(f"models: {', '.join(ready_models(server))}")
    print("Ctrl-C to stop", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if server.process.poll() is not None:
            print(f"rmbg serve: tritonserver exited with code {server.process.returncode}", file=sys.stderr)
            watchdog.stop()
            return EXIT_FAILED
    log.info("stopping...")
    watchdog.stop()
    code = server.stop()
    log.info("stopped (exit code %s)", code)
    return EXIT_OK
