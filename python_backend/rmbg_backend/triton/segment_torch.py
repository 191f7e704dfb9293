"""Triton adapter: our PyTorch IS-Net / BiRefNet on CUDA inside a Python model (gpu-torch target).

Same tensor names as every target (``input`` -> ``mask``), with ``input`` as uint8 pixels at
model resolution. The variant, precision, graph mode and device come from the config's
parameters; the weights are the state_dict file ``engine_file`` (``model.safetensors``) in
the version directory. With a
``KIND_GPU`` instance group Triton names the GPU of each instance.
"""

import json
import os
import time

import triton_python_backend_utils as pb

from rmbg_backend.families import ModelSpec
from rmbg_backend.torch_engine import TorchEngine, TorchSettings
from rmbg_backend.triton.glue import engine_responses, model_parameters


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        settings = TorchSettings.from_params(params)
        device = settings.device
        if device == "cuda" and args.get("model_instance_kind") == "GPU":
            device = f"cuda:{args['model_instance_device_id']}"
        path = os.path.join(args["model_repository"], args["model_version"], params["engine_file"])
        t0 = time.perf_counter()  # torch's import and the graph captures dominate the model's load
        self.engine = TorchEngine(path, ModelSpec.from_dict(json.loads(params["spec"])), settings, device)
        pb.Logger.log_info(f"gpu-torch {settings.variant} {settings.precision} on {self.engine.device} "
                           f"({self.engine.graphs}) loaded in {time.perf_counter() - t0:.1f} s")

    def execute(self, requests):
        return engine_responses(pb, requests, self.engine)
