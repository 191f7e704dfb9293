"""One verification policy for every ONNX file we produce: ``rmbg export`` and ``build-repo`` alike.

An artefact is checked three ways: the ONNX checker, a run in onnxruntime on a fixed input
(output shape, a probability map, a batch of 2 equal to two single runs), and, where the
source is PyTorch or a published ONNX, a comparison with it. The thresholds live here only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class VerificationError(RuntimeError):
    """An artefact failed a check; the message names the check, the figure and the bound."""


@dataclass(frozen=True)
class Tolerance:
    """Largest accepted differences. fp16 graphs get their own, wider, source bound."""

    vs_source_max_abs: float = 1e-3
    batch_vs_single_max_abs: float = 1e-4

    @classmethod
    def for_precision(cls, fp16: bool) -> Tolerance:
        # Measured: birefnet-tiny fp16 vs fp32 PyTorch differs by ~3e-3; 2e-2 still catches a wrong graph.
        return cls(vs_source_max_abs=2e-2, batch_vs_single_max_abs=2e-3) if fp16 else cls()


def deterministic_input(batch: int, height: int, width: int) -> np.ndarray:
    """A smooth, fixed test input (no RNG state involved), the same wherever it is built."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([np.sin(x / 37.0), np.cos(y / 23.0), np.sin((x + y) / 51.0)]) * 0.5
    return np.stack([base * (1.0 - 0.3 * b) for b in range(batch)]).astype(np.float32)


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def check_onnx(path: Path, height: int, width: int, tolerance: Tolerance = Tolerance(),
               source: Any = None) -> dict[str, float]:
    """Check ``path`` and return the measured figures.

    ``source`` is what it was made from: a PyTorch model with ``predict_mask``, or the path of
    a published ONNX file; either is run on the same input and compared.
    """
    import onnx

    onnx.checker.check_model(str(path))
    x = deterministic_input(2, height, width)
    both = _run_onnx(path, x)
    one = _run_onnx(path, x[:1])
    if both.shape != (2, 1, height, width):
        raise VerificationError(f"{path}: output shape {both.shape}, expected (2, 1, {height}, {width})")
    if not np.isfinite(both).all() or both.min() < 0 or both.max() > 1:
        raise VerificationError(f"{path}: output is not a probability map (min {both.min()}, max {both.max()})")
    report = {"batch_vs_single_max_abs": float(np.abs(both[:1] - one).max())}
    if source is not None:
        reference = _reference_output(source, x)
        report["vs_source_max_abs"] = float(np.abs(reference - both).max())
    for key, bound in (("batch_vs_single_max_abs", tolerance.batch_vs_single_max_abs),
                       ("vs_source_max_abs", tolerance.vs_source_max_abs)):
        if key in report and report[key] > bound:
            raise VerificationError(f"{path}: {key} = {report[key]:.3g}, over the bound {bound:g}")
    log.info("verified %s: %s", path.name, ", ".join(f"{k}={v:.3g}" for k, v in report.items()))
    return report


def _reference_output(source: Any, x: np.ndarray) -> np.ndarray:
    if isinstance(source, str | Path):
        return np.concatenate([_run_onnx(Path(source), x[i:i + 1]) for i in range(len(x))])
    import torch

    with torch.no_grad():
        return source.predict_mask(torch.from_numpy(x)).numpy()
