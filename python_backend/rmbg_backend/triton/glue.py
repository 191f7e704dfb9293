"""Helpers shared by the model.py adapters.

The ``pb`` argument is the ``triton_python_backend_utils`` module, passed in by the adapter,
so this library never imports it (it only exists inside the stub) and stays testable.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from rmbg_backend import contract as c
from rmbg_backend.decode import Limits
from rmbg_backend.errors import RequestError
from rmbg_backend.families import ModelSpec


def model_parameters(args: dict[str, str]) -> dict[str, str]:
    config = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def step_settings(args: dict[str, str]) -> tuple[ModelSpec, Limits]:
    """The ``spec`` and ``limits`` parameters every pre/post model's config carries."""
    params = model_parameters(args)
    return ModelSpec.from_dict(json.loads(params["spec"])), Limits(**json.loads(params.get("limits", "{}")))


def bytes_input(pb: Any, request: Any, name: str, required: bool = True) -> bytes | None:
    """The single BYTES element of a [1, 1] input, or None for a missing optional input."""
    tensor = pb.get_input_tensor_by_name(request, name)
    if tensor is None:
        if required:
            raise RequestError(name, "is required")
        return None
    arr = tensor.as_numpy()
    if arr.size != 1:
        raise RequestError(name, f"must hold exactly one element per request, got shape {arr.shape}")
    value = arr.reshape(-1)[0]
    return value if isinstance(value, bytes) else str(value).encode()


def bytes_tensor(pb: Any, name: str, value: bytes | str) -> Any:
    data = value.encode() if isinstance(value, str) else value
    return pb.Tensor(name, np.array([[data]], dtype=np.object_))


def json_tensor(pb: Any, name: str, value: dict[str, Any]) -> Any:
    return bytes_tensor(pb, name, json.dumps(value, separators=(",", ":")))


def error_response(pb: Any, exc: BaseException, step: str) -> Any:
    """A RequestError is the client's fault (INVALID_ARG, its field and code as ``contract.wire_error``);
    anything else is ours (INTERNAL)."""
    if isinstance(exc, RequestError):
        text = c.wire_error(exc.field, exc.code, exc.message)
        return pb.InferenceResponse(error=pb.TritonError(text, pb.TritonError.INVALID_ARG))
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return pb.InferenceResponse(
        error=pb.TritonError(f"{step} failed: {detail}", pb.TritonError.INTERNAL)
    )


def respond_each(pb: Any, requests: list[Any], step: str,
                 handle: Callable[[Any], list[Any]]) -> list[Any]:
    """Run ``handle`` per request; a failure becomes that request's error, never the batch's."""
    responses = []
    for request in requests:
        try:
            responses.append(pb.InferenceResponse(output_tensors=handle(request)))
        except Exception as exc:  # noqa: BLE001 - raising from execute() fails the whole batch
            responses.append(error_response(pb, exc, step))
    return responses


class SecondPassError(RuntimeError):
    """The engine refused or failed a highQuality second pass: the server's fault, that request's error."""


def engine_call(pb: Any, model: str) -> Callable[[np.ndarray], np.ndarray]:
    """Run the engine model ``model`` on one batch from inside a Python model (BLS).

    The request joins the engine's dynamic batcher like any other. An error comes back as
    SecondPassError naming the model, so only the request that asked for the pass fails.
    """
    def run(batch: np.ndarray) -> np.ndarray:
        request = pb.InferenceRequest(model_name=model, inputs=[pb.Tensor(c.ENGINE_INPUT, batch)],
                                      requested_output_names=[c.ENGINE_OUTPUT])
        response = request.exec()
        if response.has_error():
            raise SecondPassError(f"the highQuality second pass on model {model!r} failed: "
                                  f"{response.error().message()}")
        return pb.get_output_tensor_by_name(response, c.ENGINE_OUTPUT).as_numpy()

    return run


def engine_responses(pb: Any, requests: list[Any], engine: Any) -> list[Any]:
    """``input`` of every request through ``engine.run_batch`` at once -> one ``mask`` response each.

    The Python backend hands over a dynamic batch as separate requests and never
    concatenates; the engine stacks, runs once and splits. An engine failure is reported on
    every request of the batch (INTERNAL), never raised from ``execute``.
    """
    try:
        inputs = [pb.get_input_tensor_by_name(r, c.ENGINE_INPUT).as_numpy() for r in requests]
        masks = engine.run_batch(inputs)
    except Exception as exc:  # noqa: BLE001 - the engine failed for all: report it on each
        return [error_response(pb, exc, "segmentation") for _ in requests]
    return [pb.InferenceResponse(output_tensors=[pb.Tensor(c.ENGINE_OUTPUT, m)]) for m in masks]
