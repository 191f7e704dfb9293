"""remove.bg's API (``POST /v1.0/removebg``, ``GET /v1.0/account``): a thin adapter over the flow.

remove.bg's parameters map onto OPTIONS (the README's "remove.bg" table): ``size`` caps the output's
pixels (``preview`` 0.25 MP; ``full``, ``4k``, ``50MP`` and ``hd`` also ask for highQuality), ``roi``
limits where the subject may be, ``semitransparency=false`` hardens the edge, ``channels=alpha`` is the
mask, ``crop``/``crop_margin``/``scale``/``position``/``add_shadow``/``bg_color``/``bg_image_*`` shape
it; ``type`` is taken and reported in ``X-Type``. The answer is the image with remove.bg's headers, or
JSON with ``Accept: application/json``; ``format=zip`` is ``color.jpg`` + ``alpha.png``. Errors are
``{"errors": [{"title", "code", "detail"}]}``; a bad key is 403, as remove.bg answers it.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

from rmbg_hosted.errors import InvalidInputError, RmbgError
from rmbg_hosted.flow import Fields, Output, Removal, options_named
from rmbg_hosted.inputs import to_base64
from rmbg_server.gateway import forms
from rmbg_server.gateway.oneshot import read_params, remove_now
from rmbg_server.gateway.responses import error_response
from rmbg_server.gateway.state import gateway

PATH, ACCOUNT = "/v1.0/removebg", "/v1.0/account"
PROTOCOL = "removebg"
MODEL = "removebg"  # an alias (README, "Models"): remove.bg names no model; --alias removebg=MODEL picks one
router = APIRouter(tags=["remove.bg"])
MP = 1_000_000
# size -> (output pixel cap, highQuality); "auto" is the highest available, as on remove.bg
SIZES = {"preview": (250_000, False), "small": (250_000, False), "regular": (250_000, False),
         "medium": (int(1.5 * MP), False), "hd": (4 * MP, True), "full": (25 * MP, True), "4k": (25 * MP, True),
         "50mp": (50 * MP, True), "auto": (25 * MP, True)}
TYPES = ("auto", "person", "product", "animal", "car", "car_interior", "car_part", "transportation", "graphics",
         "other")
FORMATS = {"auto": "AUTO", "png": "PNG", "jpg": "JPG", "webp": "WEBP", "zip": "PNG"}
ACCEPTED = {"image_file", "image_file_b64", "image_url", "size", "type", "type_level", "format", "roi", "crop",
            "crop_margin", "scale", "position", "channels", "add_shadow", "shadow_type", "shadow_opacity",
            "semitransparency", "bg_color", "bg_image_url", "bg_image_file"}
# OPTIONS key -> remove.bg's own name, so a refusal by the server names what the caller sent
FIELDS = Fields(image="image_file", background="bg_image_file", model=None, options={
    "outputFormat": "format", "rgba": "bg_color", "crop": "crop", "cropMargin": "crop_margin", "scale": "scale",
    "position": "position", "shadow": "add_shadow", "shadowOpacity": "shadow_opacity", "roi": "roi",
    "maxPixels": "size", "returnOnlyMask": "channels", "postProcessMask": "semitransparency",
    "highQuality": "size", "outputSize": "size"})


def error_body(error: RmbgError) -> dict[str, Any]:
    return {"errors": [{"title": error.message, "code": error.code, "detail": str(error)}]}


def render_error(error: RmbgError) -> JSONResponse:
    """remove.bg's error shape; a missing or wrong key is its 403."""
    response = error_response(error, error_body(error))
    if error.status == 401:
        response.status_code = 403
    return response


def _percent_or_px(value: str, name: str) -> int | str:
    text = value.strip().lower()
    if text.endswith("%"):
        return text
    text = text.removesuffix("px")
    if not text.isdigit():
        raise InvalidInputError(f"each value must be pixels (40, 40px) or a percentage (10%), got {value[:20]!r}",
                                parameter=name)
    return int(text)


def _position(value: str) -> str | list[str]:
    parts = value.strip().lower().split()
    if parts in (["original"], ["center"]):
        return parts[0]
    if 1 <= len(parts) <= 2 and all(p.endswith("%") for p in parts):
        return [parts[0], parts[-1]]  # one value: the same share both ways
    raise InvalidInputError(f"must be original, center, or one or two percentages (\"50%\", \"50% 100%\"), got "
                            f"{value[:40]!r}", parameter="position")


def options_of(p: forms.Params) -> tuple[dict[str, Any], str, str]:
    """remove.bg's parameters -> (OPTIONS, its format, its type); what cannot be honoured is refused."""
    size = forms.choice(p.get("size"), "size", tuple(SIZES), "preview")
    fmt = forms.choice(p.get("format"), "format", tuple(FORMATS), "auto")
    kind = forms.choice(p.get("type"), "type", TYPES, "auto")
    forms.choice(p.get("type_level"), "type_level", ("none", "1", "2", "latest"))
    channels = forms.choice(p.get("channels"), "channels", ("rgba", "alpha"), "rgba")
    shadow_type = forms.choice(p.get("shadow_type"), "shadow_type", ("drop", "car", "3d"))
    if shadow_type not in (None, "drop"):
        raise InvalidInputError("only drop shadows are offered here (a car's or 3D shadow is generated)",
                                code="unsupportedParameter", parameter="shadow_type")
    cap, high = SIZES[size]
    options: dict[str, Any] = {"outputFormat": FORMATS[fmt], "maxPixels": cap, "highQuality": high,
                               "returnOnlyMask": channels == "alpha",
                               "postProcessMask": not forms.boolean(p.get("semitransparency"), "semitransparency",
                                                                    True)}
    if forms.boolean(p.get("crop"), "crop"):
        options["crop"] = True
        if p.get("crop_margin"):
            options["cropMargin"] = _percent_or_px(p.get("crop_margin") or "", "crop_margin")
    if p.get("scale") and p.get("scale", "").lower() != "original":
        options["scale"] = float(str(_percent_or_px(p.get("scale") or "", "scale")).rstrip("%")) / 100.0
    if p.get("position"):
        options["position"] = _position(p.get("position") or "")
    if p.get("roi"):
        values = (p.get("roi") or "").split()
        if len(values) != 4:
            raise InvalidInputError("must be four values \"x1 y1 x2 y2\" in pixels or percent, e.g. \"0% 0% 100% "
                                    "100%\"", parameter="roi")
        options["roi"] = [_percent_or_px(v, "roi") for v in values]
    if forms.boolean(p.get("add_shadow"), "add_shadow") or shadow_type == "drop":
        options["shadow"] = True
        opacity = forms.integer(p.get("shadow_opacity"), "shadow_opacity", 0, 100)
        if opacity is not None:
            options["shadowOpacity"] = opacity / 100.0
    colour = forms.colour(p.get("bg_color"), "bg_color")
    if colour is not None:
        options["rgba"] = colour
    return options, fmt, kind


def removal_of(p: forms.Params) -> tuple[Removal, str, str]:
    options, fmt, kind = options_of(p)
    image_field, image = forms.one_image(p, "image_file", ("image_file_b64", "image_url"))
    background_field, background = FIELDS.background, None
    if "bg_image_file" in p.files or p.get("bg_image_url"):
        if "rgba" in options:
            raise InvalidInputError("give bg_color or a background image, not both", parameter="bg_color")
        background_field, background = forms.one_image(p, "bg_image_file", ("bg_image_url",), "background image")
    fields = replace(FIELDS, image=image_field, background=background_field)
    return Removal(model=MODEL, image=image, options=options_named(options, fields), fields=fields,
                   background=background), fmt, kind


def zip_of(png: bytes) -> bytes:
    """remove.bg's ``format=zip``: ``color.jpg`` (the subject's colours) and ``alpha.png`` (its matte)."""
    with Image.open(io.BytesIO(png)) as image:
        rgba = image.convert("RGBA")
    colour, alpha = io.BytesIO(), io.BytesIO()
    rgba.convert("RGB").save(colour, "JPEG", quality=95)
    rgba.getchannel("A").save(alpha, "PNG")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("color.jpg", colour.getvalue())
        archive.writestr("alpha.png", alpha.getvalue())
    return out.getvalue()


def headers_of(output: Output, kind: str, credits: float) -> dict[str, str]:
    box = output.info.get("foreground") or {"top": 0, "left": 0, "width": 0, "height": 0}
    return {"X-Type": "other" if kind == "auto" else kind, "X-Width": str(output.width),
            "X-Height": str(output.height), "X-Credits-Charged": f"{credits:g}",
            "X-Foreground-Top": str(box["top"]), "X-Foreground-Left": str(box["left"]),
            "X-Foreground-Width": str(box["width"]), "X-Foreground-Height": str(box["height"])}


@router.post(PATH, summary="Remove the background (remove.bg): multipart, form or JSON; the image, or JSON",
             responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "application/zip": {},
                                          "application/json": {}}}})
async def removebg(request: Request) -> Response:
    gw = gateway(request)
    try:
        params = await read_params(request)
        forms.known_only(params, ACCEPTED)
        removal, fmt, kind = removal_of(params)
        output = await remove_now(request, removal, PROTOCOL)
    except RmbgError as exc:
        return render_error(exc)
    headers = headers_of(output, kind, gw.settings.cost_per_image)
    data, media_type = (zip_of(output.data), "application/zip") if fmt == "zip" else (output.data,
                                                                                     output.content_type)
    if "application/json" in request.headers.get("accept", ""):
        box = output.info.get("foreground") or {"top": 0, "left": 0, "width": 0, "height": 0}
        return JSONResponse({"data": {"result_b64": to_base64(data), "foreground_top": box["top"],
                                      "foreground_left": box["left"], "foreground_width": box["width"],
                                      "foreground_height": box["height"]}}, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


@router.get(ACCOUNT, summary="The account (remove.bg): credits as --credit-balance reports them")
async def account(request: Request) -> Response:
    balance = gateway(request).settings.credit_balance
    return JSONResponse({"data": {"attributes": {
        "credits": {"total": balance, "subscription": balance, "payg": 0, "enterprise": 0},
        "api": {"free_calls": balance, "sizes": "all"}}}})
