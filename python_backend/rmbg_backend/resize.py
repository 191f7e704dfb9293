"""Model input from decoded pixels: bilinear resize (half-pixel, no antialias) + normalise."""

from __future__ import annotations

import cv2
import numpy as np

from rmbg_backend.families import ModelSpec

cv2.setNumThreads(1)  # each Triton instance is one process; OpenCV's pool would oversubscribe


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear with align_corners=False semantics (what F.interpolate and ONNX half_pixel do)."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased shrink (pixel-area averaging), for images shown to people, not to the model."""
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def normalisation(spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel float32 ``scale`` and ``shift`` with ``(x/255 - mean)/std == x*scale - shift``.

    One definition for the CPU path below and the torch engine's on-device normalisation, so
    both compute the same float32 values from the same uint8 pixels.
    """
    scale = np.array([1.0 / (255.0 * s) for s in spec.std], np.float32)
    shift = np.array([m / s for m, s in zip(spec.mean, spec.std, strict=True)], np.float32)
    return scale, shift


def to_model_pixels(rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """RGB uint8 HxWx3 -> uint8 3 x spec.height x spec.width (resized, planar, not normalised).

    What the gpu-torch target sends to its engine: a quarter of the bytes of the float32
    input, normalised on the device.
    """
    return np.ascontiguousarray(resize_bilinear(rgb, spec.height, spec.width).transpose(2, 0, 1))


def to_model_input(rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 3 x spec.height x spec.width, ``(x/255 - mean) / std``."""
    resized = resize_bilinear(rgb, spec.height, spec.width)
    scale, shift = normalisation(spec)
    out = np.empty((3, spec.height, spec.width), np.float32)
    for c, plane in enumerate(cv2.split(resized)):
        # planar output written channel by channel: no HWC float copy, no transpose copy
        np.multiply(plane, scale[c], out=out[c], dtype=np.float32)
        out[c] -= shift[c]
    return out


# What an engine takes: float32 normalised input (every CPU, TensorRT and onnxruntime engine), or
# uint8 pixels that the engine normalises on its device (gpu-torch).
MODEL_INPUTS = ("float32", "uint8")


def to_engine_input(rgb: np.ndarray, spec: ModelSpec, model_input: str = "float32") -> np.ndarray:
    """``to_model_input`` or ``to_model_pixels``, as the engine's ``model_input`` says."""
    if model_input == "float32":
        return to_model_input(rgb, spec)
    if model_input == "uint8":
        return to_model_pixels(rgb, spec)
    raise ValueError(f"model_input must be one of {', '.join(MODEL_INPUTS)}, got {model_input!r}")
