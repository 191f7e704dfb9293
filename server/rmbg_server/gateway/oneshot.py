"""One removal now, for the APIs that answer with the image itself (remove.bg, Photoroom, Clipdrop,
rembg's server, OpenAI's images): admitted like every synchronous request, run by the one flow,
counted under the API's own label."""

from __future__ import annotations

from fastapi import Request

from rmbg_hosted.errors import RmbgError
from rmbg_hosted.flow import Output, Removal, run_task
from rmbg_server.gateway import forms
from rmbg_server.gateway.state import gateway, ports_of


async def read_params(request: Request, *, json_body: bool = True) -> forms.Params:
    """The request's parameters, files held to this gateway's image-size limit."""
    return await forms.read_params(request, max_file_bytes=gateway(request).settings.max_image_bytes,
                                   json_body=json_body)


async def remove_now(request: Request, removal: Removal, protocol: str) -> Output:
    """The finished output; raises RmbgError (the router renders it in its API's shape)."""
    gw = gateway(request)
    try:
        with gw.admit():
            body = await run_task(removal, ports_of(request), lambda output: {"output": output})
    except RmbgError:
        gw.metrics.tasks.labels(protocol, "failed").inc()
        raise
    gw.metrics.tasks.labels(protocol, "completed").inc()
    return body["output"]
