"""scripts/demo.py (`make demo`): the contact sheet labels its columns; the script runs end to end."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402  (scripts/ holds scripts, not a package)

LABELS = [demo.INPUT_LABEL, *(label for label, _ in demo.VARIANTS.values())]


def text_columns(header: np.ndarray) -> list[tuple[int, int]]:
    """[x0, x1) spans of the header's dark (text) pixels, split where a run of 8+ blank columns separates them."""
    inked = np.flatnonzero((header < 128).any(axis=(0, 2)))
    spans, start = [], inked[0]
    for a, b in zip(inked[:-1], inked[1:], strict=True):
        if b - a > demo.GAP:
            spans.append((start, a + 1))
            start = b
    return [*spans, (start, inked[-1] + 1)]


def test_the_columns_are_labelled_input_cutout_mask_colour_edges():
    assert [label.split(" (")[0] for label in LABELS] == ["input", "cut-out", "mask", "on colour", "refined edges"]
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (90, 90, 90), (230, 180, 20)]
    rows = [[Image.new("RGB", (w, 100), c) for c in colours] for w in (60, 300)]  # a narrow and a wide photo
    sheet = np.asarray(demo.contact_sheet(rows, LABELS, height=100))
    assert sheet.shape[0] == demo.LABEL_HEIGHT + 2 * (100 + demo.GAP)
    header = sheet[:demo.LABEL_HEIGHT]
    spans = text_columns(header)
    assert len(spans) == len(LABELS)
    for (x0, x1), colour in zip(spans, colours, strict=True):
        # under each label, centred on it, its own column of thumbnails
        middle = (x0 + x1) // 2
        assert tuple(sheet[demo.LABEL_HEIGHT + 50, middle]) == colour
        assert tuple(sheet[demo.LABEL_HEIGHT + 100 + demo.GAP + 50, middle]) == colour


def test_a_row_without_an_image_per_label_is_refused():
    with pytest.raises(ValueError, match="one image per label"):
        demo.contact_sheet([[Image.new("RGB", (10, 10))]], LABELS)


@pytest.mark.triton
def test_demo_runs_and_writes_a_labelled_sheet(tiny_repository, pairs, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for p in [p for p in pairs if p.id.startswith("ecssd") and p.image.name not in demo.DEFAULT_IMAGES][:2]:
        (images / p.image.name).write_bytes(p.image.read_bytes())
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--repo", str(tiny_repository),
                           "--out", str(out), "--images", str(images)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("*.cutout.png"))) == 2 and (out / "triton.log").stat().st_size > 0
    sheet = np.asarray(Image.open(out / "preview.png").convert("RGB"))
    assert len(text_columns(sheet[:demo.LABEL_HEIGHT])) == len(LABELS)
