"""The ``gpu-torch`` engine: our own PyTorch IS-Net / BiRefNet on CUDA (or on the CPU in tests).

Input is uint8 pixels N x 3 x H x W at model resolution (3 MB per 1024x1024 image instead of
12 MB of float32); normalisation runs on the device, in float32, with the same constants as
the CPU path (``resize.normalisation``), then the model runs in f32, fp16 or bf16 with
its LayerNorms and softmax in float32 (``models/swin.py``). Output is the float32 mask
N x 1 x H x W in 0..1, the same ``mask`` every target returns.

Inference-only rewrites at load: batch-norm folded into the convolutions, channels_last
weights and activations. Launch overhead is removed either with one CUDA graph per batch
size 1..max_batch (captured at load into one shared memory pool; inputs are copied into the
graph's static buffer and the output copied out before the next replay) or with
torch.compile, warmed for every batch size at load. On the CPU neither applies: eager.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rmbg_backend.contract import TARGET_PRECISIONS, TORCH_DEVICES, TORCH_GRAPH_MODES
from rmbg_backend.engines import Engine
from rmbg_backend.families import ModelSpec
from rmbg_backend.resize import normalisation

log = logging.getLogger(__name__)

PRECISIONS = TARGET_PRECISIONS["gpu-torch"]
GRAPH_MODES = TORCH_GRAPH_MODES
DEVICES = TORCH_DEVICES


@dataclass(frozen=True)
class TorchSettings:
    """What the engine model's config parameters say (all strings there, typed here)."""

    variant: str
    precision: str = "fp16"
    graphs: str = "cuda-graphs"
    device: str = "cuda"
    max_batch: int = 16
    compile_mode: str = "default"

    def __post_init__(self) -> None:
        for name, value, allowed in (("precision", self.precision, PRECISIONS), ("graphs", self.graphs, GRAPH_MODES),
                                     ("device", self.device, DEVICES)):
            if value not in allowed:
                raise ValueError(f"gpu-torch {name} must be one of {', '.join(allowed)}, got {value!r}")
        if not 1 <= self.max_batch <= 256:
            raise ValueError(f"gpu-torch max_batch must be 1..256, got {self.max_batch}")

    @classmethod
    def from_params(cls, params: dict[str, str]) -> TorchSettings:
        if "variant" not in params:
            raise ValueError("the gpu-torch model config needs a 'variant' parameter (isnet, birefnet, ...)")
        known = {k: v for k, v in params.items() if k in cls.__dataclass_fields__}
        if "max_batch" in known:
            known["max_batch"] = int(known["max_batch"])
        return cls(**known)

    def to_params(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def load_model(variant: str, weights: Path, precision: str = "f32", device: str = "cpu"):
    """Our definition of ``variant``, the state_dict at ``weights`` loaded strictly, ready to run.

    Batch-norm is folded, weights are channels_last in ``precision``; LayerNorm parameters
    stay float32 (their modules compute in float32 anyway).
    """
    import torch
    from torch import nn

    from rmbg_models import create_model
    from rmbg_models.checkpoint import load_checkpoint
    from rmbg_models.fuse import fold_batchnorm

    model = create_model(variant)
    load_checkpoint(model, Path(weights))
    fold_batchnorm(model)
    model = model.to(device=device, memory_format=torch.channels_last)
    if precision != "f32":
        model = model.to(dtype=torch_dtype(precision))
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.float()
    return model.eval().requires_grad_(False)


def torch_dtype(precision: str) -> Any:
    """``f32`` / ``fp16`` / ``bf16`` -> the torch dtype (torch is imported only when an engine is built)."""
    import torch

    return {"f32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


class TorchEngine(Engine):
    """``run``: uint8 N x 3 x H x W -> float32 N x 1 x H x W; N up to ``max_batch`` per launch."""

    input_dtype = np.uint8

    def __init__(self, weights: Path, spec: ModelSpec, settings: TorchSettings, device: str | None = None) -> None:
        import torch

        self.torch = torch
        self.spec = spec
        self.settings = settings
        self.device = torch.device(device or settings.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("gpu-torch: device cuda was asked for but torch sees no CUDA device (torch "
                               f"{torch.__version__}, CUDA build {torch.version.cuda}); build the repository with "
                               "--device cpu to run this engine on the CPU")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True  # fixed shapes per batch size: pick the fastest kernels once
        t0 = time.perf_counter()
        self.model = load_model(settings.variant, weights, settings.precision, self.device)
        self.dtype = torch_dtype(settings.precision)
        scale, shift = normalisation(spec)
        self.scale = torch.from_numpy(scale).view(1, 3, 1, 1).to(self.device)
        self.shift = torch.from_numpy(shift).view(1, 3, 1, 1).to(self.device)
        self.graphs = settings.graphs if self.device.type == "cuda" else "none"
        self._captured: dict[int, tuple[Any, Any, Any]] = {}
        self._compiled = None
        shape = (settings.max_batch, 3, spec.height, spec.width)
        pin = self.device.type == "cuda"
        self._host_in = torch.empty(shape, dtype=torch.uint8, pin_memory=pin)
        self._host_out = torch.empty((settings.max_batch, 1, spec.height, spec.width), dtype=torch.float32,
                                     pin_memory=pin)
        if self.graphs == "cuda-graphs":
            self._capture_graphs()
        elif self.graphs == "compile":
            self._compile()
        log.info("gpu-torch engine %s %s on %s (%s) ready in %.1f s", settings.variant, settings.precision,
                 self.device, self.graphs, time.perf_counter() - t0)

    def forward(self, pixels):
        """Device uint8 N x 3 x H x W -> device float32 masks: normalise, cast, run."""
        x = pixels.float().mul_(self.scale).sub_(self.shift)
        x = x.to(self.dtype).contiguous(memory_format=self.torch.channels_last)
        return self.model.predict_mask(x).float()

    def _capture_graphs(self) -> None:
        torch = self.torch
        pool = torch.cuda.graph_pool_handle()
        side = torch.cuda.Stream()
        h, w = self.spec.height, self.spec.width
        with torch.inference_mode():
            # Largest first: smaller graphs then fit in the blocks the largest one freed.
            for n in range(self.settings.max_batch, 0, -1):
                static_in = torch.zeros((n, 3, h, w), dtype=torch.uint8, device=self.device)
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):  # cudnn autotuning and lazy inits happen outside the capture
                        self.forward(static_in)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    static_out = self.forward(static_in)
                self._captured[n] = (graph, static_in, static_out)
        torch.cuda.synchronize()

    def _compile(self) -> None:
        torch = self.torch
        config = torch._dynamo.config
        limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        setattr(config, limit, max(getattr(config, limit), self.settings.max_batch + 2))
        self._compiled = torch.compile(self.forward, mode=self.settings.compile_mode, dynamic=False)
        h, w = self.spec.height, self.spec.width
        with torch.inference_mode():
            for n in range(1, self.settings.max_batch + 1):  # one specialisation per batch size, now
                self._compiled(torch.zeros((n, 3, h, w), dtype=torch.uint8, device=self.device))
        torch.cuda.synchronize()

    def _check(self, batch: np.ndarray) -> None:
        expected = (3, self.spec.height, self.spec.width)
        if batch.ndim != 4 or batch.shape[1:] != expected or batch.dtype != np.uint8:
            raise ValueError(f"gpu-torch engine input must be uint8 N x {' x '.join(map(str, expected))}, "
                             f"got {batch.dtype} {batch.shape}")

    def run(self, batch: np.ndarray) -> np.ndarray:
        self._check(batch)
        step = self.settings.max_batch
        parts = [self._run_chunk(batch[i:i + step]) for i in range(0, batch.shape[0], step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def run_device(self, pixels):
        """Device uint8 N x 3 x H x W (N <= max_batch) -> device float32 masks, through the
        captured graph of that batch size when there is one.

        The result may be the graph's static output: read it before the next call.
        """
        graph = self._captured.get(pixels.shape[0])
        if graph is None:
            return (self._compiled or self.forward)(pixels)
        replay, static_in, static_out = graph
        static_in.copy_(pixels, non_blocking=True)
        replay.replay()
        return static_out

    def _run_chunk(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        n = batch.shape[0]
        host_in, host_out = self._host_in[:n], self._host_out[:n]
        np.copyto(host_in.numpy(), batch)
        with torch.inference_mode():
            out = self.run_device(host_in.to(self.device, non_blocking=True))
            host_out.copy_(out, non_blocking=True)
            if self.device.type == "cuda":
                torch.cuda.current_stream().synchronize()
        return host_out.numpy().copy()  # the pinned buffer is reused by the next call
