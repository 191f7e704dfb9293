"""OpenAI-style images: ``POST /v1/images/edits`` and ``GET /v1/models``, for the ``openai`` SDKs
(``OpenAI(base_url="http://HOST:PORT/v1", api_key=KEY).images.edit(...)``).

``image`` (one file; ``image[]`` as the SDK sends a list of one), ``model`` (any of our names, e.g.
``briaai/RMBG-1.4``), ``prompt`` (taken and ignored: the edit is always "remove the background"),
``background`` (``transparent``, ``auto``: the cut-out; ``opaque``: on white), ``output_format`` (``png``,
``jpeg``, ``webp``), ``output_compression`` (0..100, held to the encoder's 20..99), ``response_format``
(``b64_json`` default, ``url``), ``n`` (1), ``size`` (``auto`` or ``WxH``: the subject framed on that
canvas), ``quality`` (``high``: highQuality). ``mask`` and other edits are a 400 naming them. Errors:
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from rmbg_hosted.errors import InvalidInputError, RmbgError
from rmbg_hosted.flow import Fields, Removal, options_named
from rmbg_hosted.inputs import to_base64
from rmbg_server.gateway import forms
from rmbg_server.gateway.oneshot import read_params, remove_now
from rmbg_server.gateway.responses import BlobJSONResponse, error_response
from rmbg_server.gateway.state import gateway

EDITS, MODELS = "/v1/images/edits", "/v1/models"
PROTOCOL = "openai"
router = APIRouter(tags=["OpenAI images"])
FORMATS = {"png": "PNG", "jpeg": "JPG", "jpg": "JPG", "webp": "WEBP"}
ACCEPTED = {"image", "image[]", "prompt", "model", "background", "output_format", "output_compression",
            "response_format", "n", "size", "quality", "user", "input_fidelity", "moderation"}
FIELDS = Fields(image="image", model="model", options={
    "outputFormat": "output_format", "outputQuality": "output_compression", "rgba": "background",
    "outputSize": "size", "highQuality": "quality"})
ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 429: "requests", 500: "server_error",
               503: "server_error"}
STARTED = int(time.time())


def render_error(error: RmbgError) -> JSONResponse:
    kind = ERROR_TYPES.get(error.status, "invalid_request_error")
    code = "invalid_api_key" if error.status == 401 else error.code
    return error_response(error, {"error": {"message": str(error), "type": kind, "param": error.parameter,
                                            "code": code}})


def options_of(p: forms.Params) -> tuple[dict[str, Any], str]:
    forms.known_only(p, ACCEPTED)
    forms.unsupported(p, ("mask",), "only whole-image background removal")
    if forms.integer(p.get("n"), "n", 1, 10) not in (None, 1):
        raise InvalidInputError("must be 1: one image in, one cut-out out", code="unsupportedParameter",
                                parameter="n")
    background = forms.choice(p.get("background"), "background", ("transparent", "opaque", "auto"), "auto")
    fmt = forms.choice(p.get("output_format"), "output_format", ("png", "jpeg", "webp"), "png") or "png"
    if background == "transparent" and fmt == "jpeg":
        raise InvalidInputError("jpeg has no transparency: use png or webp, or background opaque",
                                parameter="output_format")
    options: dict[str, Any] = {"outputFormat": FORMATS[fmt],
                               "highQuality": forms.choice(p.get("quality"), "quality",
                                                           ("auto", "low", "medium", "high", "standard", "hd"),
                                                           "auto") in ("high", "hd")}
    compression = forms.integer(p.get("output_compression"), "output_compression", 0, 100)
    if compression is not None:
        options["outputQuality"] = min(99, max(20, compression))
    if background == "opaque":
        options["rgba"] = [255, 255, 255, 255]
    size = (p.get("size") or "auto").lower()
    if size != "auto":
        width, _, height = size.partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise InvalidInputError(f"must be auto or WIDTHxHEIGHT, got {size[:30]!r}", parameter="size")
        options |= {"outputSize": [int(width), int(height)], "crop": True}
    response = forms.choice(p.get("response_format"), "response_format", ("b64_json", "url"), "b64_json")
    return options, response or "b64_json"


@router.post(EDITS, summary="Remove the background (OpenAI images.edit): b64_json or a hosted url")
async def edits(request: Request) -> Response:
    try:
        params = await read_params(request, json_body=False)
        images = [n for n in ("image", "image[]") if n in params.files]
        if len(images) != 1:
            raise InvalidInputError("is required: one image file", code="missingParameter", parameter="image")
        options, response = options_of(params)
        removal = Removal(model=params.get("model") or "briaai/RMBG-1.4", image=params.files[images[0]],
                          options=options_named(options, FIELDS), fields=FIELDS, host=response == "url")
        output = await remove_now(request, removal, PROTOCOL)
    except RmbgError as exc:
        return render_error(exc)
    item = {"url": output.url} if response == "url" else {"b64_json": to_base64(output.data)}
    return BlobJSONResponse({"created": int(time.time()), "data": [item],
                             "background": "opaque" if "rgba" in options else "transparent",
                             "output_format": params.get("output_format") or "png",
                             "size": f"{output.width}x{output.height}", "quality": params.get("quality") or "auto"})


@router.get(MODELS, summary="The models this gateway serves, by every name it answers to")
async def models(request: Request) -> Response:
    gw = gateway(request)
    served = gw.pool.served_models()
    names = sorted(name for name, family in gw.aliases.items() if family in served)
    return JSONResponse({"object": "list", "data": [
        {"id": name, "object": "model", "created": STARTED, "owned_by": f"rmbg ({gw.aliases[name]})"}
        for name in names]})
