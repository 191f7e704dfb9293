"""A tritonserver killed with SIGKILL leaves its stubs' shared-memory regions (64 MB of RAM each)
in /dev/shm; the launcher frees them when it notices, so a crash-looping pod does not fill up."""

from __future__ import annotations

import os
import signal
import time

import pytest

from rmbg_client import RmbgClient
from rmbg_server.launcher import ServerConfig, TritonServer
from rmbg_server.shm import REGION_PREFIX, SHM_DIR, mapped_names, stub_regions

pytestmark = pytest.mark.triton


def test_regions_of_a_killed_server_are_freed(tiny_repository, small_jpeg, tmp_path, caplog):
    caplog.set_level("WARNING", logger="rmbg_server.shm")
    server = TritonServer(ServerConfig.on_free_ports(tiny_repository), log_file=tmp_path / "triton.log")
    server.start(timeout=120)
    try:
        RmbgClient(server.grpc_url).remove(small_jpeg)
        regions = {SHM_DIR / name for name in stub_regions(server.process.pid)}
        assert len(regions) >= 3 and all(r.name.startswith(REGION_PREFIX) and r.exists() for r in regions)
        time.sleep(2.5)  # older than the grace period the sweep gives regions a server has not mapped yet
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(30)
        deadline = time.monotonic() + 10  # the stubs die with their process group
        while {r.name for r in regions} & (mapped_names() or set()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(r.exists() for r in regions), "Triton freed its regions itself: the sweep is not needed"
    finally:
        server.stop()
    assert not any(r.exists() for r in regions)
    assert "orphaned Python-backend shared-memory region(s)" in caplog.text
