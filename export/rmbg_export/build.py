"""``rmbg build-repo``: weights SOURCE -> servable engine -> model repository."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from rmbg_backend.spec import ModelSpec, birefnet_spec, isnet_spec
from rmbg_export.cache import cache_dir, human_size
from rmbg_export.sources import SourceError, Weights, resolve


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def deterministic_input(batch: int, height: int, width: int) -> np.ndarray:
    """A smooth, fixed test input (no RNG state involved) for engine checks."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([np.sin(x / 37.0), np.cos(y / 23.0), np.sin((x + y) / 51.0)]) * 0.5
    return np.stack([base * (1.0 - 0.3 * b) for b in range(batch)]).astype(np.float32)


def verify_onnx(path: Path, spec: ModelSpec, reference: Path | None = None) -> dict[str, float]:
    """Load with onnxruntime, run a batch of 2, check range and batch consistency.

    With ``reference`` (the unconverted source), also report the largest difference to it.
    """
    from rmbg_backend.engine import OnnxEngine

    engine = OnnxEngine(str(path))
    x = deterministic_input(2, spec.height, spec.width)
    both = engine.run(x)
    one = engine.run(x[:1])
    if both.shape != (2, 1, spec.height, spec.width):
        raise RuntimeError(f"{path}: output shape {both.shape}, expected (2, 1, {spec.height}, {spec.width})")
    if not np.isfinite(both).all() or both.min() < 0 or both.max() > 1:
        raise RuntimeError(f"{path}: output not a probability map (min {both.min()}, max {both.max()})")
    report = {"batch_consistency_max_abs": float(np.abs(both[:1] - one).max())}
    if report["batch_consistency_max_abs"] > 1e-4:
        raise RuntimeError(f"{path}: batch of 2 differs from single runs by {report['batch_consistency_max_abs']}")
    if reference is not None:
        import onnxruntime as ort

        ref = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
        ref_out = ref.run(None, {ref.get_inputs()[0].name: x[:1]})[0]
        report["vs_source_max_abs"] = float(np.abs(ref_out - one).max())
    return report


def servable_isnet_onnx(weights: Weights, spec: ModelSpec) -> Path:
    """Convert (once, cached by content hash) a published IS-Net ONNX into our serving form."""
    import onnx

    from rmbg_export.onnx_convert import prepare_for_serving

    assert weights.path is not None
    target = cache_dir() / "converted" / f"isnet-{_file_digest(weights.path)}-fp32.onnx"
    if target.exists():
        print(f"using converted engine {target} (cached)")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"converting {weights.path} to a float32, single-output, dynamic-batch graph...")
    model = prepare_for_serving(onnx.load(str(weights.path)))
    tmp = target.with_suffix(".part")
    onnx.save(model, str(tmp))
    report = verify_onnx(tmp, spec, reference=weights.path)
    print("checked with onnx.checker and onnxruntime: " + ", ".join(f"{k}={v:.3g}" for k, v in report.items()))
    tmp.replace(target)
    return target


def engine_for(model: str, weights: Weights, spec: ModelSpec, variant: str | None = None) -> Path:
    if weights.kind == "onnx":
        if model != "isnet":
            return weights.path  # a BiRefNet ONNX we exported ourselves is already servable
        return servable_isnet_onnx(weights, spec)
    from rmbg_export.export_onnx import export_from_weights  # needs torch

    return export_from_weights(model, weights, spec, variant)


def build_repo(model: str, source: str, target: str = "cpu", out: Path = Path("model_repository"),
               size: int | None = None, max_batch: int = 4, variant: str | None = None) -> list[Path]:
    """Resolve ``source``, make the engine for ``target`` and write the ``rmbg_<model>`` ensemble.

    ``variant`` picks a definition for PyTorch weights (``birefnet-lite``, tiny test variants);
    by default it follows the checkpoint.
    """
    from rmbg_export.repository import write_repository

    if model not in ("isnet", "birefnet"):
        raise SourceError(f"--model must be isnet or birefnet, got {model!r}")
    spec = isnet_spec(size or 1024) if model == "isnet" else birefnet_spec(size or 1024)
    weights = resolve(source)
    banner = "=" * 78
    print(f"{banner}\nweights: {source}\nlicence: {weights.licence}\n{banner}")
    if target == "gpu-trt":
        from rmbg_export.tensorrt_build import check_available

        check_available()  # refuse before any slow conversion or export
    engine = engine_for(model, weights, spec, variant)
    if target == "gpu-trt":
        from rmbg_export.tensorrt_build import build_engine

        engine = build_engine(engine, spec, max_batch=max_batch)
    written = write_repository(out, spec, engine, target=target, max_batch=max_batch)
    for path in written:
        print(f"wrote {path} ({human_size(path.stat().st_size)})")
    if weights.kind == "synthetic":
        print("WARNING: synthetic weights: this repository produces meaningless masks (tests only).")
    return written
