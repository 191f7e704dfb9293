"""PyTorch -> ONNX for serving: input ``input`` [N,3,H,W] -> output ``mask`` [N,1,H,W] in 0..1.

Only the final mask is exported (``predict_mask``), with a dynamic batch axis, and every file
is verified against PyTorch under the shared policy of ``rmbg_export.verify`` before it is
kept. Provenance (spec, licence, source digest) is written into the file.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from rmbg_backend.contract import ENGINE_INPUT, ENGINE_OUTPUT
from rmbg_backend.families import ModelSpec, family_of_variant
from rmbg_export import metadata
from rmbg_export.cache import cache_dir, human_size
from rmbg_export.fp16 import to_fp16
from rmbg_export.sources import SourceError, Weights, resolve
from rmbg_export.verify import Tolerance, check_onnx

log = logging.getLogger(__name__)


def build_model(variant: str, weights: Weights):
    """Our definition of ``variant`` with ``weights`` loaded strictly (or the synthetic fill)."""
    from rmbg_models import create_model
    from rmbg_models.checkpoint import load_checkpoint, read_state_dict
    from rmbg_models.reference import synthetic_state_dict

    model = create_model(variant)
    if weights.kind == "synthetic":
        log.warning("filling %s with SYNTHETIC weights (reference fill rule): masks are meaningless", variant)
        model.load_state_dict(synthetic_state_dict(model), strict=True)
    elif weights.kind in ("pth", "safetensors"):
        assert weights.path is not None
        load_checkpoint(model, read_state_dict(weights.path))
    elif weights.kind == "onnx" and family_of_variant(variant).name == "isnet":
        from rmbg_models.isnet_onnx import state_dict_from_onnx

        assert weights.path is not None
        load_checkpoint(model, state_dict_from_onnx(model, weights.path))
    else:
        raise SourceError(f"{weights.source}: only IS-Net weights can be read out of an ONNX file; "
                          "give BiRefNet weights as .pth/.safetensors, hf:<repo> or synthetic")
    return model.eval()


def variant_for(family_name: str, weights: Weights) -> str:
    """The definition a checkpoint fits: a known source names it; BiRefNet files are told apart
    by the patch-embedding width (Swin-L 192, Swin-T lite 96)."""
    from rmbg_backend.families import family

    fam = family(family_name)
    for known in fam.sources:
        if known.source == weights.source and known.variant:
            return known.variant
    if family_name != "birefnet" or weights.kind == "synthetic" or weights.path is None:
        return fam.default_variant
    from rmbg_models.checkpoint import read_state_dict, strip_prefixes

    width = strip_prefixes(read_state_dict(weights.path)).get("bb.patch_embed.proj.weight")
    return "birefnet-lite" if width is not None and width.shape[0] == 96 else "birefnet"


def export_onnx(model, path: Path, height: int, width: int, opset: int = 17, fp16: bool = False,
                dynamic_size: bool = False) -> Path:
    """Trace ``predict_mask`` at batch 1 and write an ONNX file with a dynamic batch axis."""
    import torch

    class MaskOnly(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.predict_mask(x)

    if opset < 17:
        raise ValueError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    wrapper = MaskOnly(model).eval()  # the legacy exporter restores training mode on the wrapper
    dummy = torch.zeros(1, 3, height, width)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    log.info("exporting %s at %dx%d (opset %d)...", type(model).__name__, height, width, opset)
    with torch.no_grad():
        torch.onnx.export(
            wrapper, (dummy,), str(path), input_names=[ENGINE_INPUT], output_names=[ENGINE_OUTPUT],
            dynamic_axes={ENGINE_INPUT: axes, ENGINE_OUTPUT: axes}, opset_version=opset,
            do_constant_folding=True, dynamo=False,
        )
    model.eval()
    if fp16:
        to_fp16(path)
    log.info("wrote %s (%s) in %.0f s", path, human_size(path.stat().st_size), time.monotonic() - t0)
    return path


def export_verified(model, weights: Weights, spec: ModelSpec, path: Path, opset: int = 17,
                    fp16: bool = False) -> dict[str, float]:
    """Export, verify against PyTorch (fails on a mismatch), then stamp provenance into the file."""
    export_onnx(model, path, spec.height, spec.width, opset=opset, fp16=fp16)
    report = check_onnx(path, spec.height, spec.width, Tolerance.for_precision(fp16), source=model)
    extra = {"rmbg.precision": "fp16" if fp16 else "f32"}
    metadata.stamp_file(path, metadata.provenance(spec, weights.source, weights.licence, weights.path, extra))
    return report


def export_variant(variant: str, source: str, out: Path, size: tuple[int, int] = (1024, 1024),
                   opset: int = 17, fp16: bool = False) -> dict[str, float]:
    """``rmbg export``: a variant with weights from ``source`` into a verified ONNX file at ``out``."""
    fam = family_of_variant(variant)
    spec = fam.spec(height=size[0], width=size[1])
    weights = resolve(source)
    if weights.kind == "onnx":
        raise SourceError("rmbg export needs PyTorch weights (.pth/.safetensors, hf: or synthetic), not ONNX")
    log.info("licence of %s: %s", source, weights.licence)
    return export_verified(build_model(variant, weights), weights, spec, out, opset=opset, fp16=fp16)


def resolve_variant(family_name: str, weights: Weights, variant: str | None = None) -> str:
    """The definition to load ``weights`` into: ``variant`` if given (checked), else the one it fits."""
    variant = variant or variant_for(family_name, weights)
    if family_of_variant(variant).name != family_name:
        raise SourceError(f"variant {variant!r} is not a {family_name} variant")
    return variant


def weights_key(weights: Weights) -> str:
    """A short cache key for converted forms of ``weights`` (source name and file mtime)."""
    stamp = weights.path.stat().st_mtime_ns if weights.path is not None else 0
    return hashlib.sha256(f"{weights.source}:{stamp}".encode()).hexdigest()[:12]


def cached_export(family_name: str, weights: Weights, spec: ModelSpec, variant: str | None = None) -> Path:
    """build-repo's path for PyTorch checkpoints and synthetic weights: export once, verify, cache."""
    variant = resolve_variant(family_name, weights, variant)
    target = cache_dir() / "exported" / f"{variant}-{weights_key(weights)}-{spec.height}x{spec.width}.onnx"
    if target.exists():
        log.info("using exported engine %s (cached)", target)
        return target
    tmp = target.with_suffix(".part.onnx")
    export_verified(build_model(variant, weights), weights, spec, tmp)
    tmp.replace(target)
    return target
