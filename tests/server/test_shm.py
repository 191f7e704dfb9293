"""Orphaned Python-backend regions are freed; live, young, foreign and unrelated files are not."""

from __future__ import annotations

import mmap
import os
import time

from rmbg_server.shm import REGION_PREFIX, mapped_names, orphan_regions, sweep_orphan_regions

MB = 2**20


def _region(directory, name: str, size: int = MB, age_s: float = 3600.0):
    path = directory / name
    with path.open("wb") as f:
        f.truncate(size)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_only_old_unmapped_regions_of_the_backend_are_swept(tmp_path):
    orphan = _region(tmp_path, f"{REGION_PREFIX}dead-1", 3 * MB)
    live = _region(tmp_path, f"{REGION_PREFIX}live-1")
    young = _region(tmp_path, f"{REGION_PREFIX}young-1", age_s=1.0)
    other = _region(tmp_path, "someone_elses_segment")
    with live.open("r+b") as f, mmap.mmap(f.fileno(), MB) as view:
        view[0] = 1
        assert live.name in mapped_names(tmp_path)
        assert orphan_regions(60.0, tmp_path) == [orphan]
        assert sweep_orphan_regions(60.0, tmp_path) == 3 * MB
    assert not orphan.exists()
    assert live.exists() and young.exists() and other.exists()


def test_a_region_mapped_after_its_file_was_deleted_still_counts_as_mapped(tmp_path):
    live = _region(tmp_path, f"{REGION_PREFIX}live-2")
    with live.open("r+b") as f, mmap.mmap(f.fileno(), MB):
        assert live.name in mapped_names(tmp_path)
        # maps shows "(deleted)" once the name is gone; the suffix must not become part of the name
        live.unlink()
        assert live.name in mapped_names(tmp_path)


def test_sweeping_nothing_logs_nothing(tmp_path, caplog):
    caplog.set_level("WARNING", logger="rmbg_server.shm")
    assert sweep_orphan_regions(60.0, tmp_path) == 0
    assert sweep_orphan_regions(60.0, tmp_path / "missing") == 0
    assert not caplog.records


def test_sweeping_logs_what_it_freed(tmp_path, caplog):
    caplog.set_level("WARNING", logger="rmbg_server.shm")
    _region(tmp_path, f"{REGION_PREFIX}dead-2", 64 * MB)
    sweep_orphan_regions(60.0, tmp_path)
    assert "freed 1 orphaned Python-backend shared-memory region(s)" in caplog.text and "(64 MB)" in caplog.text


def test_a_stopped_servers_own_regions_go_at_any_age_and_others_only_when_old(tmp_path):
    own = _region(tmp_path, f"{REGION_PREFIX}own-1", age_s=0.0)
    fresh = _region(tmp_path, f"{REGION_PREFIX}someone-starting", age_s=0.0)
    assert sweep_orphan_regions(60.0, tmp_path, known=frozenset({own.name, f"{REGION_PREFIX}gone"})) == MB
    assert not own.exists() and fresh.exists()
