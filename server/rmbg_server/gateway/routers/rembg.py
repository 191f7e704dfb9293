"""rembg's own server (``rembg s``): ``GET /api/remove?url=...`` and ``POST /api/remove`` (multipart ``file``).

Its parameters, as rembg 2.0 names them: ``model`` (its session names, mapped to ours below), ``a``
(alpha matting) with ``af``/``ab``/``ae``, ``om`` (only the mask), ``ppm`` (post-process the mask),
``dc`` (decontaminate edges: refineForeground), ``bgc`` (``r,g,b,a``), ``extras``. The answer is the
PNG; errors are FastAPI's ``{"detail": ...}``, as rembg's. With API keys set it takes ``Bearer``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from rmbg_hosted.errors import InvalidInputError, RmbgError
from rmbg_hosted.flow import Fields, Removal, options_named
from rmbg_server.gateway import forms
from rmbg_server.gateway.oneshot import read_params, remove_now
from rmbg_server.gateway.responses import error_response

PATH = "/api/remove"
PROTOCOL = "rembg"
router = APIRouter(tags=["rembg server"])
# rembg's session names -> our model names (aliases): its IS-Net sessions, its BiRefNet ones, and
# bria-rmbg (RMBG-2.0, its default); the U2-Net family and SAM are not served here.
MODELS = {"bria-rmbg": "briaai/RMBG-2.0", "isnet-general-use": "isnet", "isnet-anime": "isnet",
          "dis_custom": "isnet", **{f"birefnet-{v}": "birefnet" for v in (
              "general", "general-lite", "general-fp16", "portrait", "dis", "hrsod", "cod", "massive")}}
ACCEPTED = {"url", "file", "model", "a", "af", "ab", "ae", "om", "ppm", "dc", "vm", "bgc", "extras"}
FIELDS = Fields(image="file", model="model", options={
    "alphaMatting": "a", "alphaMattingForegroundThreshold": "af", "alphaMattingBackgroundThreshold": "ab",
    "alphaMattingErodeSize": "ae", "returnOnlyMask": "om", "postProcessMask": "ppm", "refineForeground": "dc",
    "rgba": "bgc"})


def render_error(error: RmbgError) -> JSONResponse:
    return error_response(error, {"detail": str(error)})


def _bgc(value: str | None) -> list[int] | None:
    if not value:
        return None
    parts = value.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise InvalidInputError(f"must be four integers r,g,b,a (each 0..255), got {value[:40]!r}", parameter="bgc")
    return [int(p) for p in parts]


def options_of(p: forms.Params) -> dict[str, Any]:
    if forms.boolean(p.get("vm"), "vm"):
        raise InvalidInputError("ViTMatte refinement is not offered here; use a (alpha matting) or dc",
                                code="unsupportedParameter", parameter="vm")
    extras = (p.get("extras") or "").strip()
    if extras and extras != "{}":
        try:
            json.loads(extras)
        except ValueError:
            raise InvalidInputError("must be a JSON object", parameter="extras") from None
        raise InvalidInputError("session extras are not offered here (they configure rembg's own models)",
                                code="unsupportedParameter", parameter="extras")
    options: dict[str, Any] = {"alphaMatting": forms.boolean(p.get("a"), "a"),
                               "returnOnlyMask": forms.boolean(p.get("om"), "om"),
                               "postProcessMask": forms.boolean(p.get("ppm"), "ppm"),
                               "refineForeground": forms.boolean(p.get("dc"), "dc")}
    for name, key in (("af", "alphaMattingForegroundThreshold"), ("ab", "alphaMattingBackgroundThreshold"),
                      ("ae", "alphaMattingErodeSize")):
        if p.get(name):
            options[key] = forms.integer(p.get(name), name, 0, 255)
    if (rgba := _bgc(p.get("bgc"))) is not None:
        options["rgba"] = rgba
    return options


def removal_of(p: forms.Params, image: str | bytes) -> Removal:
    forms.known_only(p, ACCEPTED)
    name = p.get("model") or "bria-rmbg"
    if name not in MODELS:
        raise InvalidInputError(f"{name[:60]!r} is not served here; accepted: {', '.join(MODELS)}",
                                code="unsupportedModel", parameter="model")
    return Removal(model=MODELS[name], image=image, options=options_named(options_of(p), FIELDS), fields=FIELDS)


async def answer(request: Request, removal: Removal) -> Response:
    output = await remove_now(request, removal, PROTOCOL)
    return Response(output.data, media_type=output.content_type)


@router.get(PATH, summary="Remove the background of the image at ?url= (rembg's server)",
            responses={200: {"content": {"image/png": {}}}})
async def remove_url(request: Request) -> Response:
    try:
        params = await read_params(request)
        if not params.get("url"):
            raise InvalidInputError("is required: the image's http(s) URL", code="missingParameter", parameter="url")
        return await answer(request, removal_of(params, str(params.get("url"))))
    except RmbgError as exc:
        return render_error(exc)


@router.post(PATH, summary="Remove the background of the uploaded file (rembg's server)",
             responses={200: {"content": {"image/png": {}}}})
async def remove_file(request: Request) -> Response:
    try:
        params = await read_params(request, json_body=False)
        return await answer(request, removal_of(params, forms.uploaded(params, "file")))
    except RmbgError as exc:
        return render_error(exc)
