"""CPU segmentation engines behind one interface: OpenVINO (default) or onnxruntime.

Both run the same ONNX file with the same tensor names. Measured on this 2-core EPYC over the
31 eval images (perf/results/engines_isnet.json): OpenVINO f32 0.77 s vs onnxruntime 0.84 s per
1024x1024 IS-Net image, masks within 1e-4/255; OpenVINO bf16 0.39 s but masks move by up to
1.33/255 on a low-contrast image, so bf16 is opt-in (``precision: bf16``), never the default.

``precision: int8`` runs an OpenVINO IR quantised by ``rmbg_export.quantize`` (NNCF); the
engine refuses an unquantised file under that name and reports the calibration metadata the
IR carries (``quantization``), so a served model says how it was made.
"""

from __future__ import annotations

import json
import os

import numpy as np

ENGINES = ("openvino", "onnxruntime")
CPU_PRECISIONS = ("f32", "bf16", "int8")
# Where rmbg_export.quantize records the calibration set, its size and seed: a JSON string beside
# the provenance keys (rmbg.spec, rmbg.licence...) in the IR's rt_info["framework"].
QUANTIZATION_KEY = "rmbg.quantization"


def quantization_info(model) -> dict | None:
    """The calibration metadata recorded in an ``openvino.Model`` (None when it was not quantised by us)."""
    path = ["framework", QUANTIZATION_KEY]
    return json.loads(model.get_rt_info(path).astype(str)) if model.has_rt_info(path) else None


def session_options(intra_op_threads: int = 0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = intra_op_threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning worker threads steal the cores the pre/post steps of other requests need.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


class Engine:
    """``run`` takes an N x C x H x W batch of ``input_dtype``; ``run_batch`` stacks per-request arrays."""

    input_dtype: type = np.float32

    def run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def run_batch(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        batch = np.ascontiguousarray(arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0))
        if batch.dtype != self.input_dtype:
            # float64 -> float32 is fine; float -> uint8 pixels would silently truncate: refuse it.
            if not np.can_cast(batch.dtype, self.input_dtype, casting="same_kind"):
                raise ValueError(f"engine input must be {np.dtype(self.input_dtype).name}, got {batch.dtype}")
            batch = batch.astype(self.input_dtype)
        out = self.run(batch)
        splits = np.cumsum([a.shape[0] for a in arrays])[:-1]
        return np.split(out, splits, axis=0)


class OnnxEngine(Engine):
    def __init__(self, path: str, intra_op_threads: int = 0) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(
            path, session_options(intra_op_threads), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]


class OpenVinoEngine(Engine):
    def __init__(self, path: str, threads: int = 0, precision: str = "f32") -> None:
        import openvino as ov

        if precision not in CPU_PRECISIONS:
            raise ValueError(f"precision must be {', '.join(CPU_PRECISIONS)}, got {precision!r}")
        core = ov.Core()
        model = core.read_model(path)
        self.quantization = quantization_info(model)
        quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
        if precision == "int8" and not quantized:
            raise ValueError(f"{path} is not an int8 model (no quantised layers): build it with "
                             "rmbg build-repo --precision int8")
        if quantized and precision != "int8":
            raise ValueError(f"{path} is an int8 model: serve it with precision int8, not {precision}")
        dims = model.input(0).partial_shape
        model.reshape({model.input(0): ov.PartialShape([-1, *[d for d in list(dims)[1:]]])})
        self.compiled = core.compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": threads or (os.cpu_count() or 1),
            "PERFORMANCE_HINT": "LATENCY",
            # int8 layers run int8 whatever the hint; the layers left in float stay f32
            "INFERENCE_PRECISION_HINT": "f32" if precision == "int8" else precision,
        })
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)

    def run(self, batch: np.ndarray) -> np.ndarray:
        # The result aliases the request's buffer, which the next call overwrites: copy it.
        return np.array(self.request.infer({0: batch})[self.output], copy=True)


def make_engine(path: str, kind: str = "auto", threads: int = 0, precision: str = "f32") -> Engine:
    """``auto``: OpenVINO when installed, else onnxruntime."""
    if kind == "auto":
        try:
            import openvino  # noqa: F401

            kind = "openvino"
        except ImportError:
            kind = "onnxruntime"
    if kind == "openvino":
        return OpenVinoEngine(path, threads, precision)
    if kind == "onnxruntime":
        if precision != "f32":
            raise ValueError(f"onnxruntime CPU runs float32 only; use engine openvino for {precision}")
        return OnnxEngine(path, threads)
    raise ValueError(f"engine must be auto, {' or '.join(ENGINES)}, got {kind!r}")
