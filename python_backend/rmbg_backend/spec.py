"""Per-model pre/post-processing recipes, shared by the served steps and the direct pipelines."""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What a segmentation model expects and returns.

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
        if self.mask_normalization not in ("minmax", "none"):
            raise ValueError(f"mask_normalization must be minmax or none, not {self.mask_normalization!r}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"model input size must be positive, got {self.height}x{self.width}")


def isnet_spec(size: int = 1024) -> ModelSpec:
    return ModelSpec(name="isnet", height=size, width=size)


def birefnet_spec(size: int = 1024, name: str = "birefnet") -> ModelSpec:
    if size % 32:
        raise ValueError(f"BiRefNet needs an input size divisible by 32, got {size}")
    return ModelSpec(
        name=name, height=size, width=size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        mask_normalization="none",
    )


SPECS = {"isnet": isnet_spec, "birefnet": birefnet_spec}
