"""Triton adapter for the preprocess step.

Package data: `rmbg build-repo` copies it into <repo>/preprocess_<model>/1/model.py.
"""

import numpy as np
import triton_python_backend_utils as pb

from rmbg_backend import steps
from rmbg_backend.triton_glue import bytes_input, json_tensor, respond_each, step_settings


class TritonPythonModel:
    def initialize(self, args):
        self.spec, self.limits = step_settings(args)

    def _handle(self, request):
        prepared = steps.preprocess(
            bytes_input(pb, request, "IMAGE"),
            bytes_input(pb, request, "OPTIONS", required=False),
            self.spec,
            self.limits,
        )
        return [
            pb.Tensor("input", prepared.model_input[np.newaxis]),
            pb.Tensor("PIXELS", prepared.pixels[np.newaxis]),
            json_tensor(pb, "META", prepared.meta),
        ]

    def execute(self, requests):
        return respond_each(pb, requests, "preprocess", self._handle)
