"""ICC colour management: which profile describes which pixels, and non-RGB input to sRGB.

Our outputs are RGB(A) or an 8-bit grayscale mask. An embedded profile can only travel to the
output when it describes RGB data; CMYK, CIELab and grayscale inputs are converted to sRGB
with LittleCMS (Pillow's ImageCms) using their own profile, so the output needs none (an
untagged image is sRGB by convention). A profile that does not match the pixels it came
with (a CMYK profile on an RGB JPEG, an RGB profile on a grayscale PNG) or that LittleCMS
cannot parse is ignored rather than trusted.
"""

from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image, ImageCms

MAX_ICC_BYTES = 1 << 20

# ICC data colour space signatures (ICC.1:2022 table 19) for the Pillow modes that carry one.
_MODE_SPACE = {
    "RGB": "RGB", "RGBA": "RGB", "RGBX": "RGB", "RGBa": "RGB", "P": "RGB", "PA": "RGB", "YCbCr": "RGB",
    "L": "GRAY", "LA": "GRAY", "La": "GRAY", "1": "GRAY",
    "CMYK": "CMYK", "LAB": "LAB",
}


def profile_space(icc: bytes | None) -> str | None:
    """The data colour space an ICC profile declares ('RGB', 'GRAY', 'CMYK', 'LAB', ...), or None.

    Reads the 128-byte header only (signature ``acsp`` at 36, colour space at 16), so a
    malformed profile costs nothing here; LittleCMS parses it fully only when it is used.
    """
    if not isinstance(icc, bytes) or not 128 <= len(icc) <= MAX_ICC_BYTES or icc[36:40] != b"acsp":
        return None
    return icc[16:20].decode("latin-1").strip().upper()


def mode_space(mode: str) -> str | None:
    """The ICC colour space of a Pillow mode's colour channels, None for modes without one."""
    return _MODE_SPACE.get(mode)


def profile_for_mode(icc: bytes | None, mode: str) -> bytes | None:
    """``icc`` when it describes pixels of ``mode``; None otherwise (never a profile on a mask)."""
    space = mode_space(mode)
    return icc if space is not None and space != "GRAY" and profile_space(icc) == space else None


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_LAB = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))


@lru_cache(maxsize=16)
def _transform(icc: bytes | None, in_mode: str) -> ImageCms.ImageCmsTransform:
    """One LittleCMS transform per (profile, mode); building one costs milliseconds."""
    source = _LAB if icc is None else ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return ImageCms.buildTransform(source, _SRGB, in_mode, "RGB", ImageCms.Intent.PERCEPTUAL)


def to_rgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """Colour channels of ``im`` (no alpha) as an RGB image, and the profile that now describes it.

    - RGB-family modes keep their pixels and their profile when it is an RGB one.
    - CMYK and grayscale with a matching profile, and CIELab always, go to sRGB through
      LittleCMS; the result is untagged sRGB.
    - CMYK without a usable profile uses the uncalibrated complement
      (R = 255 - C - K, as Pillow and browsers do for untagged CMYK); grayscale is replicated.
    """
    mode = im.mode
    space = mode_space(mode)
    if space == "RGB":
        return (im if mode == "RGB" else im.convert("RGB")), profile_for_mode(icc, mode)
    if mode == "1":
        im, mode = im.convert("L"), "L"
    managed = mode == "LAB" or (space in ("GRAY", "CMYK") and profile_space(icc) == space)
    if managed:
        try:
            return ImageCms.applyTransform(im, _transform(None if mode == "LAB" else icc, mode)), None
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unparseable profile: fall back to the uncalibrated conversion below
    return im.convert("RGB"), None
