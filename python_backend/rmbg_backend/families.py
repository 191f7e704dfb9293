"""The model-family registry: one record per family, read by build, export, the CLI and the servers.

Adding a family means writing its PyTorch definition (``rmbg_models``) and one
``Family`` record here. Everything that differs between families lives in the record:
the pre/post-processing recipe, the variants, the input-size multiple, the licence of each
weights source and the hook that turns a published ONNX file into our serving form.

Dependency-free on purpose (standard library only): the client's command line imports it for
its choices, and the Triton steps import it for ``ModelSpec``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MASK_NORMALIZATIONS = ("minmax", "none")


@dataclass(frozen=True)
class ModelSpec:
    """What a segmentation model expects and returns, as the served steps see it.

    ``mask_normalization`` is ``"minmax"`` for RMBG-1.4 / IS-Net (its published recipe
    stretches each prediction to 0..1) and ``"none"`` for BiRefNet (sigmoid output used as is).
    """

    name: str
    height: int = 1024
    width: int = 1024
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mask_normalization: str = "minmax"

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """From the JSON form written into config.pbtxt (lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def __post_init__(self) -> None:
        if self.mask_normalization not in MASK_NORMALIZATIONS:
            raise ValueError(f"mask_normalization must be one of {MASK_NORMALIZATIONS}, "
                             f"not {self.mask_normalization!r}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"model input size must be positive, got {self.height}x{self.width}")


@dataclass(frozen=True)
class WeightsSource:
    """A named place official weights come from, and the licence users must see before shipping."""

    source: str  # the --weights value: "imgly-isnet" or "hf:<owner>/<repo>"
    licence: str
    variant: str | None = None  # the PyTorch definition its checkpoint fits (None: an ONNX file)


@dataclass(frozen=True)
class Family:
    """Everything that differs between model families."""

    name: str
    description: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    mask_normalization: str
    variants: tuple[str, ...]  # names of PyTorch definitions in rmbg_models
    default_variant: str
    size_multiple: int  # the model input's height and width must be multiples of this
    default_size: int = 1024
    sources: tuple[WeightsSource, ...] = ()
    # "module:function" turning a published ONNX of this family into the servable graph
    # (float32, one ``mask`` output, dynamic batch); None: our own exports are servable as they are.
    onnx_conversion: str | None = None
    tiny_variants: tuple[str, ...] = field(default=())  # test-only definitions, no official weights

    def spec(self, size: int | None = None, height: int | None = None, width: int | None = None) -> ModelSpec:
        """The served recipe at a model input size (default ``default_size`` square)."""
        h = height or size or self.default_size
        w = width or size or self.default_size
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(f"{self.name} needs an input size divisible by {self.size_multiple}, got {h}x{w}")
        return ModelSpec(self.name, h, w, self.mean, self.std, self.mask_normalization)

    def all_variants(self) -> tuple[str, ...]:
        return self.variants + self.tiny_variants


SYNTHETIC_LICENCE = ("none: deterministic synthetic weights for tests and speed runs only. "
                     "THE MASKS ARE MEANINGLESS.")
UNKNOWN_LICENCE = "unknown: check the licence of this checkpoint before serving it"

_BRIA_14 = ("BRIA RMBG-1.4 licence: non-commercial use only; commercial use needs an agreement "
            "with BRIA AI.")
_BRIA_20 = ("BRIA RMBG-2.0 licence (CC BY-NC 4.0): non-commercial use only; commercial use needs "
            "an agreement with BRIA AI.")
_MIT_BIREFNET = "MIT (BiRefNet's own weights)."

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="isnet",
            description="IS-Net (the BRIA RMBG-1.4 architecture)",
            mean=(0.5, 0.5, 0.5),
            std=(1.0, 1.0, 1.0),
            mask_normalization="minmax",
            variants=("isnet",),
            default_variant="isnet",
            size_multiple=32,
            sources=(
                WeightsSource("imgly-isnet", "AGPL-3.0 (npm package @imgly/background-removal-data; IS-Net "
                              "weights from the DIS project). Serving it to others obliges you to offer your "
                              "source under AGPL-3.0."),
                WeightsSource("hf:briaai/RMBG-1.4", _BRIA_14, "isnet"),
            ),
            onnx_conversion="rmbg_export.convert:prepare_for_serving",
            tiny_variants=("isnet-tiny",),
        ),
        Family(
            name="birefnet",
            description="BiRefNet (the BRIA RMBG-2.0 architecture; Swin-L, lite: Swin-T)",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            mask_normalization="none",
            variants=("birefnet", "birefnet-lite"),
            default_variant="birefnet",
            size_multiple=32,
            sources=(
                WeightsSource("hf:briaai/RMBG-2.0", _BRIA_20, "birefnet"),
                WeightsSource("hf:ZhengPeng7/BiRefNet", _MIT_BIREFNET, "birefnet"),
                WeightsSource("hf:ZhengPeng7/BiRefNet_lite", _MIT_BIREFNET, "birefnet-lite"),
            ),
            tiny_variants=("birefnet-tiny",),
        ),
    )
}


def family(name: str) -> Family:
    """The record of ``name``; the error lists the families that exist."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def family_of_variant(variant: str) -> Family:
    for fam in FAMILIES.values():
        if variant in fam.all_variants():
            return fam
    raise ValueError(f"unknown model variant {variant!r}; known: {', '.join(all_variants())}")


def all_variants() -> list[str]:
    return [v for fam in FAMILIES.values() for v in fam.all_variants()]


def licence_of(source: str) -> str:
    """The licence of a --weights SOURCE, as users must see it before they ship the weights."""
    if source == "synthetic":
        return SYNTHETIC_LICENCE
    for fam in FAMILIES.values():
        for known in fam.sources:
            if known.source == source:
                return known.licence
    return UNKNOWN_LICENCE
