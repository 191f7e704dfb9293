"""Post-training int8 quantisation of a segmentation ONNX for OpenVINO's CPU plugin (NNCF).

Why int8: f32 IS-Net already runs close to the cores' FMA peak, so lower precision is the next
real step on CPU; int8 convolutions use VNNI where the CPU has it (AVX-512 VNNI, AVX-VNNI) and
still beat f32 on plain AVX2. The result is an OpenVINO IR (``model.xml`` + ``model.bin``):
it loads without an ONNX conversion, and the quantisation parameters live in the graph.

Calibration photos are fixed and are never the images quality is measured on: they are the
sample photos bundled inside scikit-image's wheel (``skimage/data``, public-domain/CC0,
present without any download), identified by name and sha256. Each photo gives its full
frame plus ``crops_per_image`` seeded random crops (with a random mirror), so the activation
ranges see subjects at several scales. The set (names and sha256), its size, its seed and the
tool versions are written into the IR beside the ONNX provenance keys (``rmbg.quantization``
in ``rt_info["framework"]``, read back by ``rmbg_backend.engines.quantization_info`` and logged
by the serving engine at load), and ``rmbg.precision`` becomes ``int8``, so a deployed model
says how it was made. Quantised IRs are cached by the digest of the source ONNX and the
calibration settings, like converted ONNX files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from rmbg_backend.decode import decode_image
from rmbg_backend.engines import QUANTIZATION_KEY
from rmbg_backend.families import ModelSpec
from rmbg_backend.resize import to_model_input
from rmbg_export.cache import cache_dir, file_digest

log = logging.getLogger(__name__)

# Photos with a subject and textures without one, colour and grey; nothing from ../shared/eval.
CALIBRATION_IMAGES = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
    "camera.png", "coins.png", "horse.png", "moon.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png",
    "gravel.png", "grass.png", "brick.png",
)


class QuantizationError(RuntimeError):
    """Quantisation cannot run here (missing package or calibration photos) or produced a broken model."""


@dataclass(frozen=True)
class CalibrationImage:
    name: str
    sha256: str
    path: Path


@dataclass(frozen=True)
class CalibrationConfig:
    """The settings that decide the quantised model (and so its cache key)."""

    names: tuple[str, ...] = CALIBRATION_IMAGES
    seed: int = 0
    crops_per_image: int = 1
    preset: str = "performance"  # NNCF's symmetric preset: the fastest int8 kernels

    @property
    def size(self) -> int:
        return len(self.names) * (1 + self.crops_per_image)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class QuantizationInfo:
    """What is recorded in the IR: enough to rebuild the same model and to audit it."""

    method: str
    preset: str
    calibration_source: str
    calibration_images: list[dict[str, str]]
    calibration_size: int
    seed: int
    crops_per_image: int
    source_onnx_sha256: str
    nncf_version: str
    openvino_version: str
    seconds: float = 0.0
    mean_abs_diff_vs_f32: list[float] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def calibration_images(names: Sequence[str] = CALIBRATION_IMAGES) -> list[CalibrationImage]:
    """The bundled scikit-image photos, located without importing scikit-image (and its deps)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise QuantizationError("int8 calibration uses the sample photos bundled with scikit-image: "
                                "pip install 'rmbg-triton[export]' (or scikit-image)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [n for n in names if not (data / n).is_file()]
    if missing:
        raise QuantizationError(f"calibration photos missing from {data}: {', '.join(missing)}; "
                                "reinstall scikit-image from its wheel")
    return [CalibrationImage(n, file_digest(data / n), data / n) for n in names]


def calibration_inputs(images: Sequence[CalibrationImage], spec: ModelSpec, seed: int = 0,
                       crops_per_image: int = 1) -> Iterator[np.ndarray]:
    """1 x 3 x H x W model inputs through the served preprocessing: full frames, then seeded crops.

    A crop keeps 50..100% of each side at a random place and is mirrored with probability 1/2.
    """
    rng = np.random.default_rng(seed)
    for image in images:
        rgb = decode_image(image.path.read_bytes()).rgb
        yield to_model_input(rgb, spec)[None]
        h, w = rgb.shape[:2]
        for _ in range(crops_per_image):
            ch, cw = (max(8, int(s * rng.uniform(0.5, 1.0))) for s in (h, w))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = rgb[y:y + ch, x:x + cw]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            yield to_model_input(np.ascontiguousarray(crop), spec)[None]


def _versions() -> tuple[str, str]:
    # NNCF's only switch for its usage telemetry (nothing else reads it in 3.4): builds run
    # offline and must not try to reach an analytics host.
    os.environ.setdefault("NNCF_CI", "1")
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise QuantizationError(f"--precision int8 needs NNCF and OpenVINO: pip install 'rmbg-triton[export]' "
                                f"({exc})") from exc
    return nncf.__version__, ov.get_version()


def quantize_onnx(source: Path, spec: ModelSpec, out_xml: Path, config: CalibrationConfig = CalibrationConfig(),
                  check_samples: int = 4) -> QuantizationInfo:
    """Quantise ``source`` (f32 ONNX, ``input`` -> ``mask``) to an int8 OpenVINO IR at ``out_xml``.

    The first ``check_samples`` calibration inputs are run through both models and the mean
    |int8 - f32| of each mask is recorded, so a broken quantisation shows in the metadata and
    the build log (quality itself is measured on ../shared/eval, which calibration never sees).
    """
    nncf_version, ov_version = _versions()
    import nncf
    import openvino as ov

    images = calibration_images(config.names)
    inputs = list(calibration_inputs(images, spec, config.seed, config.crops_per_image))
    core = ov.Core()
    model = core.read_model(str(source))
    t0 = time.perf_counter()
    quantized = nncf.quantize(model, nncf.Dataset(inputs), preset=nncf.QuantizationPreset(config.preset),
                              subset_size=len(inputs))
    info = QuantizationInfo(
        method="nncf.quantize (post-training, min-max ranges + fast bias correction)",
        preset=config.preset,
        calibration_source=f"scikit-image {metadata.version('scikit-image')} wheel, skimage/data",
        calibration_images=[{"name": i.name, "sha256": i.sha256} for i in images],
        calibration_size=len(inputs),
        seed=config.seed,
        crops_per_image=config.crops_per_image,
        source_onnx_sha256=file_digest(source),
        nncf_version=nncf_version,
        openvino_version=ov_version,
        seconds=round(time.perf_counter() - t0, 1),
    )
    hint = {"INFERENCE_PRECISION_HINT": "f32"}
    f32, int8 = core.compile_model(model, "CPU", hint), core.compile_model(quantized, "CPU", hint)
    for x in inputs[:check_samples]:
        diff = np.abs(int8(x)[int8.output(0)] - f32(x)[f32.output(0)]).mean()
        info.mean_abs_diff_vs_f32.append(round(float(diff), 6))
    quantized.set_rt_info("int8", ["framework", "rmbg.precision"])
    quantized.set_rt_info(info.to_json(), ["framework", QUANTIZATION_KEY])
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    log.info("quantised %s -> %s in %.0f s on %d calibration inputs; mean |int8 - f32| on the first %d: %s",
             source, out_xml, info.seconds, info.calibration_size, check_samples, info.mean_abs_diff_vs_f32)
    return info


def cached_int8_ir(source: Path, spec: ModelSpec, config: CalibrationConfig = CalibrationConfig()) -> Path:
    """The int8 IR of ``source`` (quantised once per source digest and calibration settings)."""
    stem = source.name.removesuffix(".onnx").removesuffix("-fp32")
    target = cache_dir() / "quantized" / f"{stem}-{file_digest(source)[:16]}-int8-{config.key()}.xml"
    if target.exists() and target.with_suffix(".bin").exists():
        log.info("using quantised engine %s (cached)", target)
        return target
    log.info("quantising %s to int8 with NNCF on %d calibration inputs (minutes on a small CPU)...",
             source.name, config.size)
    tmp = target.with_name(target.stem + ".part.xml")
    quantize_onnx(source, spec, tmp, config)
    tmp.with_suffix(".bin").replace(target.with_suffix(".bin"))
    tmp.replace(target)  # the .xml last: its presence marks a complete pair
    return target
