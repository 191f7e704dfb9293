"""PyTorch -> ONNX for serving: input ``input`` [N,3,H,W] -> output ``mask`` [N,1,H,W] in 0..1.

Only the final mask is exported (``predict_mask``), with a dynamic batch axis. ``--fp16``
stores weights and activations in float16 but keeps normalisation and softmax in float32
(Swin's LayerNorm overflows in float16) and float32 I/O, so the serving contract is unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

from rmbg_backend.spec import ModelSpec
from rmbg_export.cache import cache_dir, human_size
from rmbg_export.sources import SourceError, Weights, resolve

FP16_OPS = {"Conv", "MatMul", "Gemm", "ConvTranspose"}


def _torch():
    import torch

    return torch


class MaskOnly(_torch().nn.Module):
    """Exports ``model.predict_mask`` (the final sigmoid map) and nothing else."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.predict_mask(x)


def build_model(variant: str, weights: Weights):
    """Our definition of ``variant`` with ``weights`` loaded strictly (or the synthetic fill)."""
    from rmbg_export.models import create_model
    from rmbg_export.models.checkpoint import load_checkpoint, read_state_dict
    from rmbg_export.models.reference import synthetic_state_dict

    model = create_model(variant)
    if weights.kind == "synthetic":
        print(f"WARNING: filling {variant} with SYNTHETIC weights (reference fill rule): masks are meaningless")
        model.load_state_dict(synthetic_state_dict(model), strict=True)
    elif weights.kind in ("pth", "safetensors"):
        assert weights.path is not None
        load_checkpoint(model, read_state_dict(weights.path))
    else:
        raise SourceError(f"{weights.source}: an ONNX file cannot be loaded into a PyTorch model")
    return model.eval()


def birefnet_variant_for(weights: Weights) -> str:
    """Swin-L (RMBG-2.0 / BiRefNet) or Swin-T (lite), told apart by the patch-embedding width."""
    if weights.kind == "synthetic" or weights.path is None:
        return "birefnet"
    from rmbg_export.models.checkpoint import checkpoint_filter_fn, read_state_dict

    state = checkpoint_filter_fn(read_state_dict(weights.path), _Empty())
    width = state.get("bb.patch_embed.proj.weight")
    return "birefnet-lite" if width is not None and width.shape[0] == 96 else "birefnet"


class _Empty:
    @staticmethod
    def state_dict() -> dict:
        return {}


def export_onnx(model, path: Path, height: int, width: int, opset: int = 17, fp16: bool = False,
                dynamic_size: bool = False) -> Path:
    """Trace ``predict_mask`` at batch 1 and write an ONNX file with a dynamic batch axis."""
    torch = _torch()
    if opset < 17:
        raise ValueError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    wrapper = MaskOnly(model).eval()  # the legacy exporter restores training mode on the wrapper
    dummy = torch.zeros(1, 3, height, width)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print(f"exporting {type(model).__name__} at {height}x{width} (opset {opset})...", flush=True)
    with torch.no_grad():
        torch.onnx.export(
            wrapper, (dummy,), str(path), input_names=["input"], output_names=["mask"],
            dynamic_axes={"input": axes, "mask": axes}, opset_version=opset, do_constant_folding=True,
            dynamo=False,
        )
    model.eval()
    if fp16:
        to_fp16(path)
    print(f"wrote {path} ({human_size(path.stat().st_size)}) in {time.monotonic() - t0:.0f} s")
    return path


def to_fp16(path: Path) -> None:
    """Run the matrix products (Conv, MatMul, Gemm) in float16, everything else in float32.

    The heavy ops get float16 weights and Casts around them; normalisation, softmax, resizes
    and sampling keep float32, as do the graph's inputs and outputs. Types are consistent by
    construction, so the file loads in onnxruntime and TensorRT alike.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    users: dict[str, set[str]] = {}
    for node in g.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    half_inits: dict[str, str] = {}
    casts: dict[str, str] = {}
    nodes = []

    def half_input(name: str) -> str:
        if name in inits and inits[name].data_type == TensorProto.FLOAT:
            if name not in half_inits:
                arr = numpy_helper.to_array(inits[name]).astype(np.float16)
                half_name = name if users[name] <= FP16_OPS else f"{name}__fp16"
                if half_name == name:
                    inits[name].CopyFrom(numpy_helper.from_array(arr, name))
                else:
                    g.initializer.append(numpy_helper.from_array(arr, half_name))
                half_inits[name] = half_name
            return half_inits[name]
        if name not in casts:
            casts[name] = f"{name}__fp16"
            nodes.append(helper.make_node("Cast", [name], [casts[name]], to=TensorProto.FLOAT16))
        return casts[name]

    for node in g.node:
        if node.op_type in FP16_OPS:
            for i, name in enumerate(node.input):
                if name:
                    node.input[i] = half_input(name)
            out = node.output[0]
            node.output[0] = f"{out}__fp16"
            casts[out] = node.output[0]  # a following fp16 op reads the half tensor directly
            nodes.append(node)
            nodes.append(helper.make_node("Cast", [node.output[0]], [out], to=TensorProto.FLOAT))
        else:
            nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def compare_with_torch(model, path: Path, height: int, width: int) -> dict[str, float]:
    """ONNX Runtime vs PyTorch on a deterministic batch of 2, plus batch-vs-single consistency."""
    torch = _torch()
    from rmbg_backend.engine import OnnxEngine
    from rmbg_export.build import deterministic_input

    x = deterministic_input(2, height, width)
    with torch.no_grad():
        ref = model.predict_mask(torch.from_numpy(x)).numpy()
    engine = OnnxEngine(str(path))
    both = engine.run(x)
    one = engine.run(x[:1])
    return {"onnx_vs_torch_max_abs": float(np.abs(both - ref).max()),
            "batch_vs_single_max_abs": float(np.abs(both[:1] - one).max())}


def export_from_weights(model_name: str, weights: Weights, spec: ModelSpec, variant: str | None = None) -> Path:
    """build-repo's path for PyTorch checkpoints and synthetic weights: export once, cache, verify."""
    if variant is None:
        variant = "isnet" if model_name == "isnet" else birefnet_variant_for(weights)
    if not variant.startswith(model_name):
        raise SourceError(f"variant {variant!r} is not a {model_name} variant")
    digest = hashlib.sha256(f"{weights.source}:{weights.path and weights.path.stat().st_mtime_ns}".encode())
    target = cache_dir() / "exported" / f"{variant}-{digest.hexdigest()[:12]}-{spec.height}x{spec.width}.onnx"
    if target.exists():
        print(f"using exported engine {target} (cached)")
        return target
    model = build_model(variant, weights)
    tmp = target.with_suffix(".part.onnx")
    export_onnx(model, tmp, spec.height, spec.width)
    report = compare_with_torch(model, tmp, spec.height, spec.width)
    print("checked with onnxruntime: " + ", ".join(f"{k}={v:.3g}" for k, v in report.items()))
    if report["onnx_vs_torch_max_abs"] > 1e-3 or report["batch_vs_single_max_abs"] > 1e-4:
        raise RuntimeError(f"exported graph disagrees with PyTorch: {report}")
    tmp.replace(target)
    return target


def export_cli(args: argparse.Namespace) -> int:
    """``rmbg export``: --model isnet|birefnet|birefnet-lite --weights SOURCE -o FILE."""
    try:
        weights = resolve(args.weights)
        if weights.kind == "onnx":
            raise SourceError("rmbg export needs PyTorch weights (.pth/.safetensors, hf: or synthetic), not ONNX")
        print(f"licence of {args.weights}: {weights.licence}")
        model = build_model(args.model, weights)
        h, w = args.size
        if args.model.startswith("birefnet") and (h % 32 or w % 32):
            raise SourceError(f"BiRefNet needs H and W divisible by 32, got {h}x{w}")
        export_onnx(model, args.output, h, w, opset=args.opset, fp16=args.fp16)
        if not args.fp16:
            report = compare_with_torch(model, args.output, h, w)
            print("checked with onnxruntime: " + ", ".join(f"{k}={v:.3g}" for k, v in report.items()))
    except (SourceError, RuntimeError, ValueError) as exc:
        print(f"rmbg export: {exc}")
        return 1
    return 0
