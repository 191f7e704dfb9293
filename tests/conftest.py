"""Shared fixtures: the ../shared fixtures and the eval set."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__import__("os").environ.get("RMBG_SHARED", ROOT.parent / "shared"))
EVAL = SHARED / "eval"
REFERENCE = SHARED / "reference"


@dataclass(frozen=True)
class EvalPair:
    id: str
    image: Path
    mask: Path
    width: int
    height: int


def mask_quality(pred: np.ndarray, mask_path: Path) -> tuple[float, float]:
    """(MAE, IoU@0.5) of a 0..1 prediction against a ground-truth mask: the eval set's two figures."""
    gt = np.asarray(Image.open(mask_path).convert("L")).astype(np.float32) / 255.0
    mae = float(np.abs(pred - gt).mean())
    a, b = pred >= 0.5, gt > 128 / 255.0
    union = np.logical_or(a, b).sum()
    return mae, float(np.logical_and(a, b).sum() / union) if union else 1.0


def eval_pairs() -> list[EvalPair]:
    with (EVAL / "manifest.csv").open() as f:
        return [
            EvalPair(r["id"], EVAL / r["image"], EVAL / r["mask"], int(r["width"]), int(r["height"]))
            for r in csv.DictReader(f)
        ]


@pytest.fixture(scope="session")
def pairs() -> list[EvalPair]:
    if not EVAL.is_dir():
        pytest.fail(f"the shared eval set is missing at {EVAL} (set RMBG_SHARED)")
    return eval_pairs()


@pytest.fixture(scope="session")
def small_jpeg(pairs) -> bytes:
    """A real photo, small enough that tests stay fast (ECSSD, about 400x300)."""
    return next(p for p in pairs if p.id == "ecssd_0039").image.read_bytes()
