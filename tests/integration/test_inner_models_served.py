"""The ensemble's inner models called directly: Triton serves every model of the repository to anyone who
reaches its port (2.51 restricts API categories, never single models), so ``postprocess_isnet`` keeps the
limits and re-validates what it is sent (README, "Limits and security"; the checks:
tests/python_backend/test_handoff.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from rmbg_backend import contract as c
from rmbg_client import RmbgClient
from rmbg_server.watchdog import stub_processes

pytestmark = pytest.mark.triton

POSTPROCESS = c.step_name("postprocess", "isnet")
PREPROCESS = c.step_name("preprocess", "isnet")


@pytest.fixture(scope="module")
def grpc(triton):
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        yield client


@pytest.fixture(scope="module")
def handed_off(grpc, small_jpeg):
    """What preprocess_isnet really hands to postprocess for a photo: (mask input, PIXELS, META dict)."""
    image = grpcclient.InferInput(c.IMAGE, [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[small_jpeg]], dtype=np.object_))
    result = grpc.infer(PREPROCESS, [image])
    model_input = result.as_numpy(c.ENGINE_INPUT)
    mask = np.full((1, 1, *model_input.shape[-2:]), 0.5, np.float32)
    mask[..., : model_input.shape[-2] // 2, :] = 0.0  # some contrast: a real cut-out, not an empty mask
    return mask, result.as_numpy(c.PIXELS)[0], json.loads(result.as_numpy(c.META).reshape(-1)[0])


def postprocess(grpc, mask: np.ndarray, pixels: np.ndarray, meta: dict | bytes):
    """One direct call of postprocess_isnet: (IMAGE_OUT bytes, INFO) or the refusal it answered."""
    tensors = []
    for name, value, dtype in ((c.ENGINE_OUTPUT, mask, "FP32"), (c.PIXELS, pixels[np.newaxis], "UINT8"),
                               (c.META, np.array([[meta if isinstance(meta, bytes) else json.dumps(meta).encode()]],
                                                 dtype=np.object_), "BYTES")):
        tensor = grpcclient.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    try:
        result = grpc.infer(POSTPROCESS, tensors, client_timeout=300)
    except InferenceServerException as exc:
        return exc
    return result.as_numpy(c.IMAGE_OUT).reshape(-1)[0], json.loads(result.as_numpy(c.INFO).reshape(-1)[0])


def refusal(answer) -> c.WireError:
    assert isinstance(answer, InferenceServerException), f"served a {len(answer[0]):,}-byte result"
    assert answer.status() == "StatusCode.INVALID_ARGUMENT", answer
    error = c.parse_wire_error(answer.message())
    assert error is not None, answer.message()
    return error


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def test_the_handed_off_request_itself_is_served(grpc, handed_off):
    mask, pixels, meta = handed_off
    data, info = postprocess(grpc, mask, pixels, meta)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and (info["width"], info["height"]) == (meta["width"], meta["height"])


@pytest.mark.parametrize(("height", "width"), [(1, 40000), (8000, 8000)])
def test_pixels_over_the_limits_are_refused_with_bounded_memory(triton, grpc, handed_off, small_jpeg, height, width):
    """Before: a 74 MB PNG for 8000 x 8000 (64 MP, over the 50 MP limit), the stub peaking at 1.2 GB."""
    mask, _, meta = handed_off
    stub = next(pid for pid, model in stub_processes(triton.process.pid).items() if model == POSTPROCESS)
    pixels = np.zeros((height, width, 3), np.uint8)
    Path(f"/proc/{stub}/clear_refs").write_text("5")  # reset the stub's peak RSS (VmHWM) to its RSS
    start_kb = _status_kb(stub, "VmRSS")
    error = refusal(postprocess(grpc, mask, pixels, {**meta, "width": width, "height": height}))
    grown = (_status_kb(stub, "VmHWM") - start_kb) * 1024
    assert error.field == c.PIXELS and error.code == "invalidImage", error
    assert f"{width}x{height}" in error.message and "50,000,000 pixels (and 30,000 per side)" in error.message
    # The refusal reads the shape only. The Python backend itself maps the tensor's pages from the shared
    # memory and peaks at about twice its size before our code runs (measured: 183 MB resident + 183 MB
    # transient for 8000 x 8000); nothing beyond that, where the accepted request took 1.2 GB.
    budget = 2.5 * pixels.nbytes + 32 * 2**20
    assert grown < budget, f"the postprocess stub grew by {grown / 2**20:.0f} MB (budget {budget / 2**20:.0f} MB)"
    assert stub in stub_processes(triton.process.pid)  # the same stub, alive
    assert RmbgClient(triton.grpc_url).remove(small_jpeg).info["width"] > 0  # the server keeps serving


@pytest.mark.parametrize(("forge", "field", "code", "fragment"), [
    (lambda m: {**m, "options": {**m["options"], "outputQuality": 5000}}, "outputQuality", "invalidParameter",
     "20..99"),
    (lambda m: {**m, "options": {**m["options"], "alphaMattingErodeSize": 10**9}}, "alphaMattingErodeSize",
     "invalidParameter", "1..255"),
    (lambda m: {**m, "options": {**m["options"], "notAnOption": 1}}, "notAnOption", "unsupportedParameter",
     "unknown option"),
    (lambda m: {**m, "width": m["width"] + 1}, "META", "invalidParameter", "but PIXELS holds"),
    (lambda m: {k: v for k, v in m.items() if k != "timings"}, "META", "invalidParameter", "lacks timings"),
    (lambda m: b"{not json", "META", "invalidParameter", "not valid JSON"),
])
def test_a_forged_meta_is_refused_naming_the_field(grpc, handed_off, forge, field, code, fragment):
    mask, pixels, meta = handed_off
    error = refusal(postprocess(grpc, mask, pixels, forge(meta)))
    assert (error.field, error.code) == (field, code) and fragment in error.message, error
