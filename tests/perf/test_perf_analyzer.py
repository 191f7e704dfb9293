"""perf/perf_analyzer.py records which engine precision its figures were taken with."""

from __future__ import annotations

import sys

import pytest

from rmbg_backend.families import family
from rmbg_export.configs import RepositorySettings, engine_config, render
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "perf"))
from perf_analyzer import engine_precision  # noqa: E402  (perf/ holds scripts, not a package)


@pytest.mark.parametrize("precision", ["int8", "f32", "bf16"])
def test_precision_is_read_from_the_config_build_repo_writes(tmp_path, precision):
    config = engine_config(family("isnet").spec(64), RepositorySettings(precision=precision))
    (tmp_path / "isnet").mkdir()
    (tmp_path / "isnet" / "config.pbtxt").write_text(render(config))
    assert engine_precision(tmp_path) == precision


def test_a_repository_without_the_engine_records_no_precision(tmp_path):
    assert engine_precision(tmp_path) is None


def test_windows_hold_about_ten_requests_whatever_one_takes():
    from perf_analyzer import REQUESTS_PER_WINDOW, window_args

    assert window_args(2.0, 0, 0) == ["--measurement-mode", "time_windows", "--measurement-interval",
                                      str(int(REQUESTS_PER_WINDOW * 2000))]
    assert window_args(0.01, 0, 0)[-1] == "4000"  # a floor, so fast engines still average over time
    assert window_args(1e4, 0, 0)[-1] == "300000"  # and a ceiling
    assert window_args(2.0, 7000, 0)[-1] == "7000"
    assert window_args(2.0, 0, 25) == ["--measurement-mode", "count_windows", "--measurement-request-count", "25"]
