"""onnxruntime session wrapper used by the CPU-target segmentation step and direct pipelines."""

from __future__ import annotations

import os

import numpy as np


def session_options(intra_op_threads: int = 0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = intra_op_threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return so


class OnnxEngine:
    """One ORT session; ``run_batch`` stacks per-request arrays, runs once and splits back."""

    def __init__(self, path: str, intra_op_threads: int = 0) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(
            path, session_options(intra_op_threads), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def run_batch(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        out = self.run(np.ascontiguousarray(batch, dtype=np.float32))
        splits = np.cumsum([a.shape[0] for a in arrays])[:-1]
        return np.split(out, splits, axis=0)
