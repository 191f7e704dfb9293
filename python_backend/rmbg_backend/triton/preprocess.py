"""Triton adapter for the preprocess step.

Copied by `rmbg build-repo` into <repo>/preprocess_<model>/1/model.py.
"""

import numpy as np
import triton_python_backend_utils as pb

from rmbg_backend import contract as c
from rmbg_backend import steps
from rmbg_backend.triton.glue import bytes_input, json_tensor, model_parameters, respond_each, step_settings


class TritonPythonModel:
    def initialize(self, args):
        self.spec, self.limits = step_settings(args)
        self.model_input = model_parameters(args).get("model_input", "float32")  # uint8 for gpu-torch

    def _handle(self, request):
        prepared = steps.preprocess(
            bytes_input(pb, request, c.IMAGE),
            bytes_input(pb, request, c.OPTIONS, required=False),
            self.spec,
            self.limits,
            self.model_input,
        )
        return [
            pb.Tensor(c.ENGINE_INPUT, prepared.model_input[np.newaxis]),
            pb.Tensor(c.PIXELS, prepared.pixels[np.newaxis]),
            json_tensor(pb, c.META, prepared.meta),
        ]

    def execute(self, requests):
        return respond_each(pb, requests, "preprocess", self._handle)
