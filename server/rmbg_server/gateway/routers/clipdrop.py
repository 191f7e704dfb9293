"""Clipdrop's ``POST /remove-background/v1``: multipart ``image_file``, the format chosen by ``Accept``.

``transparency_handling``: ``return_input_if_non_opaque`` keeps an input's own transparency (OPTIONS
``preserveAlpha``: combined with the predicted mask), ``discard_alpha_layer`` ignores it. The answer is
the image with ``x-credits-consumed`` (``--cost-per-image``) and, with ``--credit-balance``,
``x-remaining-credits``. Errors are Clipdrop's ``{"error": message}``; an Accept it cannot serve is 406.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from rmbg_hosted.errors import InvalidInputError, RmbgError
from rmbg_hosted.flow import Fields, Removal, options_named
from rmbg_server.gateway import forms
from rmbg_server.gateway.oneshot import read_params, remove_now
from rmbg_server.gateway.responses import error_response
from rmbg_server.gateway.state import gateway

PATH = "/remove-background/v1"
PROTOCOL = "clipdrop"
MODEL = "clipdrop"  # an alias: IS-Net unless --alias clipdrop=birefnet
router = APIRouter(tags=["Clipdrop"])
ACCEPT = {"image/png": "PNG", "image/webp": "WEBP", "image/jpeg": "JPG"}
HANDLING = ("return_input_if_non_opaque", "discard_alpha_layer")
FIELDS = Fields(image="image_file", model=None, options={"preserveAlpha": "transparency_handling",
                                                          "outputFormat": "Accept"})


def render_error(error: RmbgError) -> JSONResponse:
    return error_response(error, {"error": str(error)})


def output_format(accept: str) -> str:
    """The first image type ``Accept`` names that we serve; PNG for none, ``*/*`` or ``image/*``."""
    wanted = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    for media in wanted or ["image/png"]:
        if media in ACCEPT:
            return ACCEPT[media]
        if media in ("*/*", "image/*"):
            return "PNG"
    raise InvalidInputError(f"must ask for one of {', '.join(ACCEPT)}, got {accept[:80]!r}", code="notAcceptable",
                            parameter="Accept", status=406)


def options_of(p: forms.Params, accept: str) -> dict[str, Any]:
    handling = forms.choice(p.get("transparency_handling"), "transparency_handling", HANDLING, HANDLING[0])
    return {"outputFormat": output_format(accept), "preserveAlpha": handling == HANDLING[0]}


@router.post(PATH, summary="Remove the background (Clipdrop)",
             responses={200: {"content": {"image/png": {}, "image/webp": {}, "image/jpeg": {}}}})
async def remove_background(request: Request) -> Response:
    gw = gateway(request)
    try:
        params = await read_params(request, json_body=False)
        forms.known_only(params, {"image_file", "transparency_handling"})
        options = options_named(options_of(params, request.headers.get("accept", "")), FIELDS)
        image = forms.uploaded(params, "image_file")
        output = await remove_now(request, Removal(model=MODEL, image=image, options=options, fields=FIELDS), PROTOCOL)
    except RmbgError as exc:
        return render_error(exc)
    headers = {"x-credits-consumed": f"{gw.settings.cost_per_image:g}"}
    if gw.settings.credit_balance is not None:
        headers["x-remaining-credits"] = f"{gw.settings.credit_balance:g}"
    return Response(output.data, media_type=output.content_type, headers=headers)
