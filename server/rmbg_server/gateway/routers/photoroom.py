"""Photoroom: ``POST /v1/segment`` (Remove Background API) and the background-removal and framing subset
of ``GET|POST /v2/edit`` (Image Editing API).

v1: ``image_file``, ``format`` (png, jpg, webp), ``channels`` (rgba, alpha), ``bg_color`` (hex or a
name), ``size`` (preview 0.25 MP, medium 1.5 MP, hd 4 MP, full; hd and full also highQuality), ``crop``,
``despill`` (refineForeground). v2: ``imageFile``/``imageUrl``, ``removeBackground``, ``background.color``,
``background.imageUrl``/``background.imageFile``, ``outputSize`` (``WxH``, ``originalImage``,
``croppedSubject``), ``padding`` (a ratio, a percentage or pixels: the subject fills the canvas but for
it), ``horizontalAlignment``/``verticalAlignment``, ``shadow.mode`` (``ai.soft``, ``ai.hard``,
``ai.floating``: drop shadows of three shapes, not generated ones), ``export.format``. Every generative
parameter (``background.prompt``, ``lighting.*``, ``expand.*``, ...) is a 400 naming it. Errors:
``{"error": {"detail", "status_code", "type"}}``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from rmbg_hosted.errors import InvalidInputError, RmbgError
from rmbg_hosted.flow import Fields, Removal, options_named
from rmbg_server.gateway import forms
from rmbg_server.gateway.oneshot import read_params, remove_now
from rmbg_server.gateway.responses import error_response, status_of

V1, V2 = "/v1/segment", "/v2/edit"
PROTOCOL = "photoroom"
MODEL = "photoroom"  # an alias: IS-Net unless --alias photoroom=birefnet
router = APIRouter(tags=["Photoroom"])
MP = 1_000_000
SIZES = {"preview": (250_000, False), "medium": (int(1.5 * MP), False), "hd": (4 * MP, True), "full": (None, True)}
FORMATS = {"png": "PNG", "jpg": "JPG", "jpeg": "JPG", "webp": "WEBP"}
V1_FIELDS = Fields(image="image_file", model=None, options={
    "outputFormat": "format", "returnOnlyMask": "channels", "rgba": "bg_color", "maxPixels": "size",
    "highQuality": "size", "crop": "crop", "refineForeground": "despill"})
V2_FIELDS = Fields(image="imageFile", background="background.imageFile", model=None, options={
    "outputFormat": "export.format", "rgba": "background.color", "outputSize": "outputSize", "crop": "outputSize",
    "scale": "padding", "position": "horizontalAlignment", "shadow": "shadow.mode", "shadowBlur": "shadow.mode"})
V2_ACCEPTED = {"imageFile", "imageUrl", "removeBackground", "background.color", "background.imageUrl",
               "background.imageFile", "outputSize", "padding", "horizontalAlignment", "verticalAlignment",
               "shadow.mode", "export.format"}
SHADOWS = {"ai.soft": {"shadowBlur": 20.0, "shadowOpacity": 0.5, "shadowOffset": [0, 10]},
           "ai.hard": {"shadowBlur": 3.0, "shadowOpacity": 0.7, "shadowOffset": [0, 6]},
           "ai.floating": {"shadowBlur": 30.0, "shadowOpacity": 0.4, "shadowOffset": [0, 40]}}
ALIGN = {"left": 0, "top": 0, "center": 50, "right": 100, "bottom": 100}


def render_error(error: RmbgError) -> JSONResponse:
    return error_response(error, {"error": {"detail": str(error), "status_code": status_of(error, 400),
                                            "type": error.code}})


def v1_options(p: forms.Params) -> dict[str, Any]:
    forms.known_only(p, {"image_file", "format", "channels", "bg_color", "size", "crop", "despill"})
    cap, high = SIZES[forms.choice(p.get("size"), "size", tuple(SIZES), "full") or "full"]
    options: dict[str, Any] = {
        "outputFormat": FORMATS[forms.choice(p.get("format"), "format", ("png", "jpg", "webp"), "png") or "png"],
        "returnOnlyMask": forms.choice(p.get("channels"), "channels", ("rgba", "alpha"), "rgba") == "alpha",
        "crop": forms.boolean(p.get("crop"), "crop"), "refineForeground": forms.boolean(p.get("despill"), "despill"),
        "maxPixels": cap, "highQuality": high}
    if (colour := forms.colour(p.get("bg_color"), "bg_color")) is not None:
        options["rgba"] = colour
    return options


def _padding(value: str | None, canvas: tuple[int, int] | None) -> float | None:
    """Photoroom's padding (0..0.49, "30%", or "100px" of the canvas) as the share of the canvas it leaves."""
    if value is None or value == "":
        return None
    text = value.strip().lower()
    try:
        if text.endswith("px"):
            if canvas is None:
                raise InvalidInputError("in pixels needs outputSize WxH", parameter="padding")
            share = float(text[:-2]) / min(canvas)
        else:
            share = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise InvalidInputError(f"must be a ratio 0..0.49, a percentage or pixels, got {value[:20]!r}",
                                parameter="padding") from None
    if not 0 <= share <= 0.49:
        raise InvalidInputError(f"must be 0..0.49 of the canvas, got {value[:20]!r}", parameter="padding")
    return share


def _canvas(value: str | None) -> tuple[str, tuple[int, int] | None]:
    text = (value or "originalImage").strip()
    if text in ("originalImage", "croppedSubject"):
        return text, None
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise InvalidInputError(f"must be WIDTHxHEIGHT, originalImage or croppedSubject, got {text[:30]!r}",
                                parameter="outputSize")
    return "size", (int(width), int(height))


def v2_options(p: forms.Params) -> dict[str, Any]:
    generative = sorted(n for n in p.names() - V2_ACCEPTED if "." in n or n in ("lighting", "expand", "uncrop"))
    if generative:
        raise InvalidInputError("generative edits are not offered here (background removal and framing are)",
                                code="unsupportedParameter", parameter=generative[0])
    forms.known_only(p, V2_ACCEPTED)
    if not forms.boolean(p.get("removeBackground"), "removeBackground", True):
        raise InvalidInputError("must be true here: this service removes backgrounds", code="unsupportedParameter",
                                parameter="removeBackground")
    kind, canvas = _canvas(p.get("outputSize"))
    fmt = forms.choice(p.get("export.format"), "export.format", tuple(FORMATS), "png") or "png"
    # a canvas frames the subject (Photoroom's referenceBox is the subject's box), as croppedSubject does
    options: dict[str, Any] = {"outputFormat": FORMATS[fmt], "crop": kind != "originalImage"}
    if canvas is not None:
        options["outputSize"] = list(canvas)
    padding = _padding(p.get("padding"), canvas)
    if padding is not None:
        options["scale"] = 1.0 - 2.0 * padding
    x = ALIGN[forms.choice(p.get("horizontalAlignment"), "horizontalAlignment", ("left", "center", "right"),
                           "center") or "center"]
    y = ALIGN[forms.choice(p.get("verticalAlignment"), "verticalAlignment", ("top", "center", "bottom"),
                           "center") or "center"]
    if canvas is not None or padding is not None or (x, y) != (50, 50):
        options["position"] = [x, y]
    shadow = forms.choice(p.get("shadow.mode"), "shadow.mode", tuple(SHADOWS))
    if shadow is not None:
        options |= {"shadow": True, **SHADOWS[shadow]}
    if (colour := forms.colour(p.get("background.color"), "background.color")) is not None:
        options["rgba"] = colour
    return options


async def _answer(request: Request, removal: Removal) -> Response:
    output = await remove_now(request, removal, PROTOCOL)
    return Response(output.data, media_type=output.content_type)


@router.post(V1, summary="Remove the background (Photoroom Remove Background API)",
             responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}})
async def segment(request: Request) -> Response:
    try:
        params = await read_params(request, json_body=False)
        options = options_named(v1_options(params), V1_FIELDS)
        image = forms.uploaded(params, "image_file")
        return await _answer(request, Removal(model=MODEL, image=image, options=options, fields=V1_FIELDS))
    except RmbgError as exc:
        return render_error(exc)


async def _edit(request: Request) -> Response:
    try:
        params = await read_params(request, json_body=False)
        options = options_named(v2_options(params), V2_FIELDS)
        image_field, image = forms.one_image(params, "imageFile", ("imageUrl",))
        background_field, background = V2_FIELDS.background, None
        if "background.imageFile" in params.files or params.get("background.imageUrl"):
            background_field, background = forms.one_image(params, "background.imageFile", ("background.imageUrl",),
                                                            "background")
        fields = replace(V2_FIELDS, image=image_field, background=background_field)
        return await _answer(request, Removal(model=MODEL, image=image, options=options, fields=fields,
                                              background=background))
    except RmbgError as exc:
        return render_error(exc)


router.add_api_route(V2, _edit, methods=["GET"], summary="Remove the background and frame it, from imageUrl "
                     "(Photoroom Image Editing API, its background-removal and framing subset)")
router.add_api_route(V2, _edit, methods=["POST"], summary="The same, from an uploaded imageFile",
                     response_class=Response)
