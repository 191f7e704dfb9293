"""Triton adapter: the segmentation engine (OpenVINO or onnxruntime) inside a Python model (CPU target).

Same tensor names as the native tensorrt_plan / onnxruntime targets, so the ensemble does not
change between targets. Requests arrive batched by Triton's dynamic batcher; the Python
backend never concatenates, so we stack, run once, and split. An int8 build's engine file is
an OpenVINO IR (model.xml); its calibration metadata goes to the server log at load.
"""

import json
import os

import triton_python_backend_utils as pb

from rmbg_backend.engines import make_engine
from rmbg_backend.triton.glue import engine_responses, model_parameters


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        path = os.path.join(args["model_repository"], args["model_version"], params.get("engine_file", "model.onnx"))
        precision = params.get("precision", "f32")
        self.engine = make_engine(path, params.get("engine", "auto"), int(params.get("threads", "0")), precision)
        quantization = getattr(self.engine, "quantization", None)
        pb.Logger.log_info(f"{args['model_name']}: {type(self.engine).__name__} {precision} on {path}"
                           + (f"; quantization {json.dumps(quantization)}" if quantization else ""))

    def execute(self, requests):
        return engine_responses(pb, requests, self.engine)
