"""Triton adapter for the postprocess step.

Package data: `rmbg build-repo` copies it into <repo>/postprocess_<model>/1/model.py.
"""

import json

import triton_python_backend_utils as pb

from rmbg_backend import steps
from rmbg_backend.triton_glue import bytes_input, bytes_tensor, json_tensor, respond_each, step_settings


class TritonPythonModel:
    def initialize(self, args):
        self.spec, self.limits = step_settings(args)

    def _handle(self, request):
        meta = json.loads(bytes_input(pb, request, "META"))
        data, info = steps.postprocess(
            pb.get_input_tensor_by_name(request, "mask").as_numpy()[0],
            pb.get_input_tensor_by_name(request, "PIXELS").as_numpy()[0],
            meta,
            self.spec,
            bytes_input(pb, request, "BACKGROUND", required=False),
            self.limits,
        )
        return [bytes_tensor(pb, "IMAGE_OUT", data), json_tensor(pb, "INFO", info)]

    def execute(self, requests):
        return respond_each(pb, requests, "postprocess", self._handle)
