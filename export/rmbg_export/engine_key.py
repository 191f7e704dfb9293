"""Which model repository a container may reuse: a key over GPU, TensorRT, image and build settings.

A TensorRT plan (and onnxruntime's TensorRT engine cache) only loads on the GPU model and the
TensorRT version that built it, and a new image may bring a new exporter. The container's
entrypoint builds the repository into ``<models volume>/<key>/`` and serves that directory, so a
change of any of these picks a new directory and rebuilds instead of loading a stale engine.

``python -m rmbg_export.engine_key --model M --weights W --target T`` prints the key.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from importlib import metadata

# CUdevice_attribute values from cuda.h (stable since CUDA 6).
_CC_MAJOR, _CC_MINOR = 75, 76
_NVINFER_SONAMES = ("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so")
_BINDINGS_DISTRIBUTIONS = ("tensorrt-cu12-bindings", "tensorrt-cu13-bindings", "tensorrt")


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: str  # "9.0"


@dataclass(frozen=True)
class BuildSettings:
    """What ``rmbg build-repo`` is asked for; a change of any field must not reuse a repository."""

    model: str
    weights: str
    target: str
    max_batch: int = 4
    size: int | None = None

    def digest(self) -> str:
        text = json.dumps([self.model, self.weights, self.target, self.max_batch, self.size])
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def decode_tensorrt_version(value: int) -> str:
    """``getInferLibVersion()`` -> "major.minor.patch".

    TensorRT 10 encodes major*10000 + minor*100 + patch; TensorRT 8 and earlier major*1000 +
    minor*100 + patch. Majors >= 10 always give values >= 100000, so the two never overlap.
    """
    if value <= 0:
        raise ValueError(f"not a TensorRT version number: {value}")
    if value >= 100000:
        return f"{value // 10000}.{value // 100 % 100}.{value % 100}"
    return f"{value // 1000}.{value // 100 % 10}.{value % 100}"


def runtime_tensorrt_version() -> str | None:
    """The version of the TensorRT library the server will load (``libnvinfer``), or None."""
    for soname in _NVINFER_SONAMES:
        try:
            lib = ctypes.CDLL(soname)
        except OSError:
            continue
        lib.getInferLibVersion.restype = ctypes.c_int32
        return decode_tensorrt_version(int(lib.getInferLibVersion()))
    return None


def bindings_tensorrt_version() -> str | None:
    """The installed TensorRT Python bindings' version (the engine builder), or None."""
    for dist in _BINDINGS_DISTRIBUTIONS:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def same_release(a: str, b: str) -> bool:
    """TensorRT versions agree on major.minor.patch (the fourth field is a build number)."""
    return a.split(".")[:3] == b.split(".")[:3]


def detect_gpus() -> list[Gpu]:
    """The CUDA devices this process sees, through the driver API; [] without a driver or GPU."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return []
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return []
    gpus = []
    for index in range(count.value):
        device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        name = ctypes.create_string_buffer(256)
        if (cuda.cuDeviceGet(ctypes.byref(device), index) != 0
                or cuda.cuDeviceGetName(name, len(name), device) != 0
                or cuda.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device) != 0
                or cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device) != 0):
            continue
        gpus.append(Gpu(name.value.decode(errors="replace"), f"{major.value}.{minor.value}"))
    return gpus


def slug(text: str) -> str:
    """Lower-case, filesystem- and URL-safe: runs of anything else become one '-'."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "none"


def engine_key(settings: BuildSettings, gpus: list[Gpu], tensorrt: str | None, image: str) -> str:
    """The directory name for a repository built with ``settings`` on ``gpus`` under ``tensorrt``.

    CPU targets ignore GPU and TensorRT (they build nothing device-specific), so a CPU
    repository survives a move between nodes; GPU targets need both.
    """
    if settings.target == "cpu":
        device = "cpu"
    else:
        if not gpus:
            raise RuntimeError(f"target {settings.target} needs an NVIDIA GPU and none is visible: the engine must be "
                               "built on the GPU that runs it (check the nvidia.com/gpu limit or --gpus)")
        if not tensorrt:
            raise RuntimeError(f"target {settings.target} needs TensorRT and no libnvinfer was found: run it in the "
                               "NGC tritonserver image (docker/Dockerfile)")
        kinds = sorted({f"{g.name}-sm{g.compute_capability.replace('.', '')}" for g in gpus})
        device = "+".join(slug(k) for k in kinds) + f"-trt{tensorrt}"
    return f"{settings.target}-{device}-{slug(image)}-{settings.digest()}"


def check_builder_matches_runtime(target: str, runtime: str | None, bindings: str | None) -> None:
    """A plan built by one TensorRT and served by another does not load: refuse before building."""
    if target != "gpu-trt":
        return
    if bindings is None:
        raise RuntimeError("the TensorRT Python bindings are not installed, so no plan can be built; the image pins "
                           "tensorrt-cu12-bindings to the container's TensorRT (docker/Dockerfile)")
    if runtime is not None and not same_release(runtime, bindings):
        raise RuntimeError(f"TensorRT bindings {bindings} differ from the server's libnvinfer {runtime}: a plan built "
                           "with them would not load. Rebuild the image with TENSORRT_VERSION set to the base "
                           "image's TensorRT version.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rmbg_export.engine_key", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--target", required=True, choices=["cpu", "gpu-trt", "gpu-ort"])
    p.add_argument("--max-batch", type=int, default=4)
    p.add_argument("--size", type=int)
    p.add_argument("--image-version", default=os.environ.get("RMBG_IMAGE_VERSION", "dev"))
    a = p.parse_args(argv)
    settings = BuildSettings(a.model, a.weights, a.target, a.max_batch, a.size)
    runtime = runtime_tensorrt_version() if a.target != "cpu" else None
    try:
        check_builder_matches_runtime(a.target, runtime, bindings_tensorrt_version())
        key = engine_key(settings, detect_gpus() if a.target != "cpu" else [], runtime, a.image_version)
    except RuntimeError as exc:
        print(f"engine key: {exc}", file=sys.stderr)
        return 1
    print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
