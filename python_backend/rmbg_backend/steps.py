"""The two request-level steps the ensemble runs around the segmentation engine.

Each returns plain arrays/bytes plus a META dict that travels between the steps as JSON, so
the Triton adapters only unpack and pack tensors. Timings are wall-clock milliseconds;
``model_ms`` spans preprocess end to postprocess start (engine, batching queue and the
ensemble's tensor hand-offs), the same on every target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from rmbg_backend import handoff
from rmbg_backend.compose import compose
from rmbg_backend.decode import Limits, decode_image
from rmbg_backend.encode import encode
from rmbg_backend.errors import RequestError
from rmbg_backend.families import ModelSpec
from rmbg_backend.high_quality import SecondPass, high_quality_alpha
from rmbg_backend.mask import apply_roi, mask_to_alpha, post_process_mask
from rmbg_backend.options import parse_options
from rmbg_backend.resize import MODEL_INPUTS, to_engine_input
from rmbg_backend.shape import cap_pixels, foreground_box, shape
from rmbg_backend.shape import check_options as check_shaping


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


@dataclass
class Prepared:
    model_input: np.ndarray  # 3 x H x W: float32 normalised, or uint8 pixels (gpu-torch normalises on the GPU)
    pixels: np.ndarray  # H x W x 3 (or x 4 with the input's alpha) uint8
    meta: dict[str, Any]


def preprocess(image_bytes: bytes, options_raw: bytes | None, spec: ModelSpec,
               limits: Limits = Limits(), model_input: str = "float32") -> Prepared:
    """Validate OPTIONS first (cheap), then decode, check the result fits the output format,
    and build the model input: everything a request can be refused for is found before the model runs.

    ``model_input`` ``uint8`` leaves normalisation to the engine (the gpu-torch target).
    """
    if model_input not in MODEL_INPUTS:
        raise ValueError(f"model_input must be one of {', '.join(MODEL_INPUTS)}, got {model_input!r}")
    options = parse_options(options_raw)
    check_shaping(options, limits)
    t0 = time.perf_counter()
    image = decode_image(image_bytes, limits=limits)
    handoff.check_request(options, image.width, image.height, limits)
    decode_ms = _ms(t0)
    t1 = time.perf_counter()
    model_input_array = to_engine_input(image.rgb, spec, model_input)
    pixels = image.rgb if image.alpha is None else np.dstack([image.rgb, image.alpha])
    meta = handoff.meta(image, options, {"decode_ms": decode_ms, "preprocess_ms": _ms(t1)}, time.time())
    return Prepared(model_input_array, np.ascontiguousarray(pixels), meta)


def postprocess(mask: np.ndarray, pixels: np.ndarray, meta: dict[str, Any], spec: ModelSpec,
                background_bytes: bytes | None = None, limits: Limits = Limits(),
                second_pass: SecondPass | None = None, model_input: str = "float32",
                ) -> tuple[bytes, dict[str, Any]]:
    """Mask -> alpha at the original size -> options -> encoded image and the INFO dict.

    ``pixels`` and ``meta`` are checked first (``handoff.receive``): this step can be called on its own.
    ``second_pass`` runs the engine once more for ``highQuality`` (in Triton, a BLS call to the
    engine model); ``model_input`` is that engine's input kind. INFO's ``second_pass_ms`` is its
    time, queue included, and is not part of ``postprocess_ms``.
    """
    t0 = time.perf_counter()
    received = handoff.receive(pixels, meta, limits)
    image, options, timings = received.image, received.options, received.timings
    timings["model_ms"] = round((time.time() - received.preprocess_end) * 1000.0, 3)
    background = None
    if background_bytes is not None and not options.returnOnlyMask:
        background = decode_image(background_bytes, field="BACKGROUND", limits=limits)
    if options.highQuality:
        if second_pass is None:
            raise ValueError("highQuality needs a second engine pass, and this postprocess was given none")
        alpha, timings["second_pass_ms"] = high_quality_alpha(mask, image.rgb, spec, second_pass, model_input)
    else:
        alpha = mask_to_alpha(mask, image.height, image.width, spec.mask_normalization)
    if options.roi is not None:
        alpha = apply_roi(alpha, options.roi)
    if options.postProcessMask:
        alpha = post_process_mask(alpha)
    foreground = None
    if options.alphaMatting:
        from rmbg_backend.matting import alpha_matting  # heavier import, only when asked

        alpha, foreground = alpha_matting(
            image.rgb, alpha,
            fg_threshold=options.alphaMattingForegroundThreshold,
            bg_threshold=options.alphaMattingBackgroundThreshold,
            erode_size=options.alphaMattingErodeSize,
        )
    image, alpha, foreground = shape(image, alpha, options, foreground, limits)
    image, alpha, foreground = cap_pixels(image, alpha, foreground, options.maxPixels)
    pixels_out, mode = compose(image, alpha, options, background, foreground)
    box = foreground_box(alpha)
    width, height, icc = image.width, image.height, image.icc_profile
    del image, alpha, foreground, background, received  # freed before encoding adds its own copies
    timings["postprocess_ms"] = round(_ms(t0) - timings.get("second_pass_ms", 0.0), 3)
    t1 = time.perf_counter()
    data, content_type = encode(pixels_out, mode, options.outputFormat, options.outputQuality, icc)
    del pixels_out
    timings["encode_ms"] = _ms(t1)
    if len(data) > limits.max_output_bytes:
        raise RequestError("IMAGE_OUT", f"the encoded result is {len(data):,} bytes, over the limit of "
                           f"{limits.max_output_bytes:,}; ask for JPG or WEBP, or a smaller image")
    info = {
        "width": width,
        "height": height,
        "contentType": content_type,
        "model": spec.name,
        "foreground": box,
        "timings": timings,
    }
    return data, info
