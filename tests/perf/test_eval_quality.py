"""perf/eval_quality.py: the summary's ratios and target checks, on rows with known answers; the
edge-band figure it reports, on masks whose error is known."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, edge_band, edge_band_error, quality_figures

sys.path.insert(0, str(ROOT / "perf"))
from eval_quality import summarise  # noqa: E402  (perf/ holds scripts, not a package)


def row(group: str, ms: tuple[float, float, float], edge: tuple[float, float, float]) -> dict:
    figures = dict(zip(("rembg", "default", "high_quality"), zip(ms, edge, strict=True), strict=True))
    return {"id": group, "group": group,
            **{name: {"ms": t, "mae": e / 4, "iou": 1 - e, "edge": e} for name, (t, e) in figures.items()}}


def test_summary_ratios_and_targets():
    rows = [row("animal", (3000, 400, 800), (0.10, 0.10, 0.08)),
            row("plant", (3000, 600, 1000), (0.20, 0.20, 0.10))]
    s = summarise(rows)
    assert s["high_quality"]["edge"] == pytest.approx(0.09) and s["rembg"]["edge"] == pytest.approx(0.15)
    assert s["edge_below_rembg"]["high_quality"] == pytest.approx(0.4)
    assert s["time_ratio_high_quality_to_default"]["of_means"] == pytest.approx(1800 / 1000)
    assert s["time_ratio_high_quality_to_default"]["median_per_image"] == pytest.approx((2.0 + 1000 / 600) / 2)
    assert s["per_category"]["plant"]["high_quality"]["mae"] == pytest.approx(0.025)
    # MAE 0.0225 <= 0.029, IoU 0.91 >= 0.91, edge 40% below rembg, 1.8x the time
    assert s["met"] == {"high_quality_mae": True, "high_quality_iou": True, "high_quality_edge_vs_rembg": True,
                        "high_quality_time": True}
    slow = summarise([row("animal", (3000, 400, 1300), (0.10, 0.10, 0.095))])
    assert not slow["met"]["high_quality_time"] and not slow["met"]["high_quality_edge_vs_rembg"]


def test_edge_band_is_ten_pixels_either_side_of_the_truth_edge(tmp_path):
    truth = np.zeros((60, 80), np.uint8)
    truth[:, 40:] = 255
    path = tmp_path / "truth.png"
    Image.fromarray(truth).save(path)
    band = edge_band(truth.astype(np.float32) / 255)
    assert band[:, 30:50].all() and not band[:, :29].any() and not band[:, 51:].any()
    shifted = np.zeros((60, 80), np.float32)
    shifted[:, 45:] = 1.0  # the edge 5 px too far right: 5 of the band's ~21 columns wrong
    assert edge_band_error(shifted, path) == pytest.approx(5 / band[0].sum())
    figures = quality_figures(shifted, path)
    assert figures["mae"] == pytest.approx(5 / 80) and figures["iou"] == pytest.approx(35 / 40)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    assert edge_band_error(np.zeros((8, 8), np.float32), path) == 0.0  # no edge: nothing to get wrong
