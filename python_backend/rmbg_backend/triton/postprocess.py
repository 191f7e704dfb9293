"""Triton adapter for the postprocess step.

Copied by `rmbg build-repo` into <repo>/postprocess_<model>/1/model.py.
"""

import json

import triton_python_backend_utils as pb

from rmbg_backend import contract as c
from rmbg_backend import steps
from rmbg_backend.triton.glue import (
    bytes_input,
    bytes_tensor,
    engine_call,
    json_tensor,
    model_parameters,
    respond_each,
    step_settings,
)


class TritonPythonModel:
    def initialize(self, args):
        self.spec, self.limits = step_settings(args)
        # highQuality's second pass goes to the ensemble's own engine (named after the model)
        self.second_pass = engine_call(pb, self.spec.name)
        self.model_input = model_parameters(args).get("model_input", "float32")  # uint8 for gpu-torch

    def _handle(self, request):
        meta = json.loads(bytes_input(pb, request, c.META))
        data, info = steps.postprocess(
            pb.get_input_tensor_by_name(request, c.ENGINE_OUTPUT).as_numpy()[0],
            pb.get_input_tensor_by_name(request, c.PIXELS).as_numpy()[0],
            meta,
            self.spec,
            bytes_input(pb, request, c.BACKGROUND, required=False),
            self.limits,
            self.second_pass,
            self.model_input,
        )
        return [bytes_tensor(pb, c.IMAGE_OUT, data), json_tensor(pb, c.INFO, info)]

    def execute(self, requests):
        return respond_each(pb, requests, "postprocess", self._handle)
