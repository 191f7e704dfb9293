"""Cut-out, mask-only or composite output pixels from the image, its alpha and the options."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from rmbg_backend.decode import DecodedImage
from rmbg_backend.options import Options

WHITE = (255, 255, 255, 255)


def _premultiplied(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour times alpha, rounded to uint8: what a resize may average without dark fringes.

    Averaging straight (non-premultiplied) colour lets the black under transparent pixels
    bleed into the edge of the visible ones; premultiplied, a transparent pixel adds nothing.
    """
    return cv2.multiply(rgb, cv2.merge([alpha, alpha, alpha]), scale=1.0 / 255.0)


def cover(background: DecodedImage, height: int, width: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``background`` scaled to cover height x width (aspect kept) and centred: (premultiplied RGB, alpha).

    Only the visible window of the background is ever resized, and never past the output
    size: shrinking area-averages that window straight down to the output; enlarging maps
    each output pixel back into the window (one affine warp). Both sample the exact centred
    window, fractional edges included. So a 3000 x 1
    background behind a 1000 x 1000 image costs one 1000 x 1000 array, not a 3,000,000 x 1000
    one. Returned colour is premultiplied by the returned alpha (None: opaque).
    """
    bh, bw = background.height, background.width
    scale = max(height / bh, width / bw)
    # the visible window, in background pixels (continuous coordinates), centred
    win_h, win_w = height / scale, width / scale
    top, left = (bh - win_h) / 2.0, (bw - win_w) / 2.0
    rgb, alpha = background.rgb, background.alpha
    if scale < 1.0:
        # area-average exactly the (fractional) window: Pillow's BOX filter with a source box
        # reads only the whole pixels around it and writes only the output
        y0, x0 = int(np.floor(top)), int(np.floor(left))
        y1, x1 = min(bh, int(np.ceil(top + win_h))), min(bw, int(np.ceil(left + win_w)))
        box = (left - x0, top - y0, left - x0 + win_w, top - y0 + win_h)

        def shrink(a: np.ndarray) -> np.ndarray:
            return np.asarray(Image.fromarray(a).resize((width, height), Image.Resampling.BOX, box=box))

        rgb = rgb[y0:y1, x0:x1]
        if alpha is None:
            return shrink(rgb), None
        alpha = alpha[y0:y1, x0:x1]
        return shrink(_premultiplied(rgb, alpha)), shrink(np.ascontiguousarray(alpha))
    # output pixel centre x + 0.5 lies at background coordinate left + (x + 0.5) / scale
    m = np.float32([[1.0 / scale, 0.0, left + 0.5 / scale - 0.5], [0.0, 1.0 / scale, top + 0.5 / scale - 0.5]])
    y0, x0 = max(0, int(np.floor(top)) - 1), max(0, int(np.floor(left)) - 1)
    y1, x1 = min(bh, int(np.ceil(top + win_h)) + 1), min(bw, int(np.ceil(left + win_w)) + 1)
    m[0, 2] -= x0
    m[1, 2] -= y0

    def warp(a: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(a, m, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    rgb = rgb[y0:y1, x0:x1]
    if alpha is not None:
        alpha = alpha[y0:y1, x0:x1]
        return warp(_premultiplied(rgb, alpha)), warp(alpha)
    return warp(np.ascontiguousarray(rgb)), None


_BAND_ROWS = 256  # rows composited at a time: float temporaries stay a few MB whatever the size


def _over_band(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, bg_alpha: np.ndarray | float,
               rgb_out: np.ndarray, alpha_out: np.ndarray | None) -> None:
    a = alpha.astype(np.float32)
    a *= np.float32(1.0 / 255.0)
    a = a[:, :, None]
    out = fg.astype(np.float32)
    out *= a
    inv = 1.0 - a
    out += np.asarray(bg, dtype=np.float32) * inv
    if alpha_out is not None:
        ba = np.asarray(bg_alpha, dtype=np.float32) * np.float32(1.0 / 255.0)
        out_a = a + (ba[:, :, None] if ba.ndim == 2 else ba) * inv
        np.divide(out, out_a, out=out, where=out_a > 0)  # where out_a is 0, out is already 0 (premultiplied)
        alpha_out[...] = np.clip(out_a[:, :, 0] * 255.0 + 0.5, 0, 255)
    out += 0.5
    rgb_out[...] = np.clip(out, 0, 255, out=out)


def over(
    fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, bg_alpha: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Porter-Duff "over" of uint8 layers; returns RGB and, unless opaque, the result alpha.

    ``fg`` is straight colour with ``alpha``; ``bg`` is PREMULTIPLIED colour (H x W x 3 or a
    length-3 colour) with ``bg_alpha`` (an H x W uint8 array or a 0..255 scalar). Works in
    bands of rows, so besides its uint8 results it needs only a few MB of float temporaries.
    """
    h, w = alpha.shape
    opaque = np.isscalar(bg_alpha) and float(bg_alpha) >= 255
    rgb = np.empty((h, w, 3), np.uint8)
    out_alpha = None if opaque else np.empty((h, w), np.uint8)
    per_pixel_bg, per_pixel_alpha = np.ndim(bg) == 3, np.ndim(bg_alpha) == 2
    for y0 in range(0, h, _BAND_ROWS):
        rows = slice(y0, y0 + _BAND_ROWS)
        _over_band(fg[rows], alpha[rows], bg[rows] if per_pixel_bg else bg,
                   bg_alpha[rows] if per_pixel_alpha else bg_alpha, rgb[rows],
                   None if out_alpha is None else out_alpha[rows])
    return rgb, out_alpha


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
        bg, bg_alpha = np.asarray(options.rgba[:3], dtype=np.float32) * (options.rgba[3] / 255.0), options.rgba[3]
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
