"""Cut-out, mask-only or composite output pixels from the image, its alpha and the options."""

from __future__ import annotations

import numpy as np

from rmbg_backend.decode import DecodedImage
from rmbg_backend.options import Options
from rmbg_backend.resize import resize_area, resize_bilinear

WHITE = (255, 255, 255, 255)


def cover(background: DecodedImage, height: int, width: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Scale ``background`` to cover height x width (keeping its aspect), then centre-crop."""
    bh, bw = background.height, background.width
    scale = max(height / bh, width / bw)
    sh, sw = max(height, round(bh * scale)), max(width, round(bw * scale))
    top, left = (sh - height) // 2, (sw - width) // 2
    # Shrinking a large photo with plain bilinear aliases; area averaging does not.
    resize = resize_area if sh < bh else resize_bilinear
    rgb = resize(background.rgb, sh, sw)[top : top + height, left : left + width]
    alpha = None
    if background.alpha is not None:
        alpha = resize(background.alpha, sh, sw)[top : top + height, left : left + width]
    return rgb, alpha


def over(
    fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, bg_alpha: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Porter-Duff "over" of uint8 layers; returns RGB and, unless opaque, the result alpha.

    ``bg`` is H x W x 3 or a length-3 colour; ``bg_alpha`` an H x W uint8 array or a 0..255 scalar.
    """
    a = alpha.astype(np.float32)[:, :, None] * (1.0 / 255.0)
    if np.isscalar(bg_alpha) and float(bg_alpha) >= 255:
        bgf = np.asarray(bg, dtype=np.float32)
        out = bgf + (fg.astype(np.float32) - bgf) * a
        return np.clip(out + 0.5, 0, 255).astype(np.uint8), None
    ba = np.asarray(bg_alpha, dtype=np.float32) * (1.0 / 255.0)
    if ba.ndim == 2:
        ba = ba[:, :, None]
    out_a = a + ba * (1.0 - a)
    num = fg.astype(np.float32) * a + np.asarray(bg, dtype=np.float32) * ba * (1.0 - a)
    rgb = np.divide(num, out_a, out=np.zeros_like(num), where=out_a > 0)
    return (
        np.clip(rgb + 0.5, 0, 255).astype(np.uint8),
        np.clip(out_a[:, :, 0] * 255.0 + 0.5, 0, 255).astype(np.uint8),
    )


def compose(
    image: DecodedImage,
    alpha: np.ndarray,
    options: Options,
    background: DecodedImage | None = None,
    foreground: np.ndarray | None = None,
) -> tuple[np.ndarray, str]:
    """Return (pixels, PIL mode) for the encoder.

    ``foreground`` is an estimated foreground colour (from alpha matting) that replaces the
    input colours so the old background does not bleed into semi-transparent edges.
    """
    if options.preserveAlpha and image.alpha is not None:
        alpha = np.minimum(alpha, image.alpha)
    if options.returnOnlyMask:
        return alpha, "L"
    fg = image.rgb if foreground is None else foreground
    if background is not None:
        bg, bg_alpha = cover(background, image.height, image.width)
        if bg_alpha is None:
            bg_alpha = 255
    elif options.rgba is not None:
        bg, bg_alpha = np.asarray(options.rgba[:3], dtype=np.uint8), options.rgba[3]
    elif options.outputFormat == "JPG":
        bg, bg_alpha = np.asarray(WHITE[:3], dtype=np.uint8), 255
    else:
        return np.dstack([fg, alpha]), "RGBA"
    rgb, out_alpha = over(fg, alpha, bg, bg_alpha)
    if out_alpha is None:
        return rgb, "RGB"
    if options.outputFormat == "JPG":  # no alpha in JPEG: flatten what is left onto white
        rgb, _ = over(rgb, out_alpha, np.asarray(WHITE[:3], dtype=np.uint8), 255)
        return rgb, "RGB"
    return np.dstack([rgb, out_alpha]), "RGBA"
