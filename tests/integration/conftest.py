"""One real Triton server per test session, on free loopback ports, serving real IS-Net weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmbg_server.launcher import ServerConfig, TritonServer
from rmbg_server.watchdog import StubWatchdog


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
