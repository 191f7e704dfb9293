"""Output shaping: crop to the subject, canvas size, scale and position, drop shadow, edge colours.

Runs after matting and before compose, on plain arrays (README, "Output shaping"). The subject is
every pixel whose alpha is at least ``SUBJECT_ALPHA``; its bounding box drives ``crop``,
``scale`` and ``position``. Memory stays bounded by the output: the source is only sliced
(views, no copies), only the part of it that lands on the canvas is resampled, and every
array this module allocates has at most the canvas's size.

Geometry in one sentence: a source region (the crop box, or the whole image) is scaled by
``k`` and translated onto a canvas (``outputSize``, else the region's own size); ``k`` fits
the region into the canvas, or, with ``scale``, makes the subject box that share of the
canvas; ``position`` places the subject box in the canvas's free space as CSS's
``background-position`` does (0% touches the left/top, 50% centres, 100% touches the
right/bottom; ``original`` takes those shares from where the subject sat in the source).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from rmbg_backend.compose import over
from rmbg_backend.decode import DecodedImage, Limits
from rmbg_backend.errors import RequestError
from rmbg_backend.options import Options
from rmbg_backend.resize import resize_area, resize_bilinear

# Alpha (of 255) from which a pixel counts as subject: 12.5%, so the faint halo a model leaves
# around a subject does not widen the box, while soft hair edges mostly stay inside it.
SUBJECT_ALPHA = 32
# Above this Gaussian sigma the shadow is blurred at a reduced scale (cost O(1) in the sigma).
_DIRECT_BLUR_SIGMA = 8.0
_SHADOW_RGB = np.zeros(3, np.uint8)  # black


@dataclass(frozen=True)
class Box:
    """Pixel rectangle [x0, x1) x [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class Placement:
    """Source pixel edge x maps to canvas x * k + tx (likewise y); canvas is width x height."""

    k: float
    tx: float
    ty: float
    width: int
    height: int


def is_active(options: Options) -> bool:
    return bool(options.crop or options.outputSize or options.scale is not None or options.position is not None
                or options.shadow or options.refineForeground)


def subject_box(alpha: np.ndarray, threshold: int = SUBJECT_ALPHA) -> Box | None:
    """Bounding box of the pixels with alpha >= threshold; None when there are none.

    Row and column maxima only: two vectors, never a full-size boolean mask.
    """
    rows = np.flatnonzero(alpha.max(axis=1) >= threshold)
    if rows.size == 0:
        return None
    cols = np.flatnonzero(alpha.max(axis=0) >= threshold)
    return Box(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def crop_box(box: Box, margin: int | str, width: int, height: int) -> Box:
    """``box`` grown by ``margin`` (pixels, or "N%" of the box's width / height) and clipped to the image."""
    if isinstance(margin, str):
        share = float(margin.rstrip("%")) / 100.0
        mx, my = round(share * box.width), round(share * box.height)
    else:
        mx = my = int(margin)
    return Box(max(0, box.x0 - mx), max(0, box.y0 - my), min(width, box.x1 + mx), min(height, box.y1 + my))


def check_canvas(width: int, height: int, limits: Limits, key: str = "outputSize") -> None:
    """The output canvas is held to the same limits as a decoded input (``Limits`` in decode.py)."""
    if width > limits.max_side or height > limits.max_side:
        raise RequestError(key, f"{width}x{height} is over the output limit of {limits.max_side:,} pixels per "
                                "side (max_side); ask for a smaller canvas")
    if width * height > limits.max_pixels:
        raise RequestError(key, f"{width}x{height} = {width * height:,} pixels is over the output limit of "
                                f"{limits.max_pixels:,} pixels (max_pixels); ask for a smaller canvas")


def check_options(options: Options, limits: Limits) -> None:
    """What can be refused before the model runs: a requested canvas over the limits."""
    if options.outputSize is not None:
        check_canvas(*options.outputSize, limits)


def _free_share(position: str | tuple[float, float] | None, subject: Box, width: int, height: int
                ) -> tuple[float, float]:
    """Share (0..1) of the canvas's free space left of / above the anchored box."""
    if position == "original":
        fx = subject.x0 / (width - subject.width) if width > subject.width else 0.5
        fy = subject.y0 / (height - subject.height) if height > subject.height else 0.5
        return fx, fy
    if isinstance(position, tuple):
        return position[0] / 100.0, position[1] / 100.0
    return 0.5, 0.5


def placement(options: Options, subject: Box, region: Box, width: int, height: int) -> Placement:
    """Scale and offset of ``region`` (source pixels) on the canvas; see the module docstring.

    Without ``scale`` and ``position`` the region itself is fitted and centred, so ``crop``
    alone is an exact crop and no option at all is the identity.
    """
    cw, ch = options.outputSize or (region.width, region.height)
    if options.scale is not None:
        k = options.scale * min(cw / subject.width, ch / subject.height)
    else:
        k = min(cw / region.width, ch / region.height)
    anchor = region if options.scale is None and options.position is None else subject
    fx, fy = _free_share(options.position, subject, width, height)
    tx = fx * (cw - k * anchor.width) - k * anchor.x0
    ty = fy * (ch - k * anchor.height) - k * anchor.y0
    if abs(k - 1.0) < 1e-9:  # unscaled: whole-pixel offsets, so pixels are copied, not resampled
        k, tx, ty = 1.0, float(round(tx)), float(round(ty))
    return Placement(k, tx, ty, cw, ch)


def _visible(p: Placement, region: Box) -> Box:
    """Canvas pixels whose centres fall inside the placed region."""
    def span(a: int, b: int, t: float, size: int) -> tuple[int, int]:
        return max(0, math.ceil(p.k * a + t - 0.5)), min(size, math.ceil(p.k * b + t - 0.5))

    x0, x1 = span(region.x0, region.x1, p.tx, p.width)
    y0, y1 = span(region.y0, region.y1, p.ty, p.height)
    return Box(x0, y0, max(x0, x1), max(y0, y1))


def _resample(src: np.ndarray, p: Placement, region: Box, vis: Box) -> np.ndarray:
    """The canvas rectangle ``vis`` of ``src`` placed by ``p``, reading only ``region``."""
    if p.k == 1.0:
        tx, ty = int(p.tx), int(p.ty)
        return src[vis.y0 - ty:vis.y1 - ty, vis.x0 - tx:vis.x1 - tx]
    if p.k < 1.0:  # shrink: area-average the source window that covers vis
        sx0 = max(region.x0, math.floor((vis.x0 - p.tx) / p.k))
        sx1 = min(region.x1, math.ceil((vis.x1 - p.tx) / p.k))
        sy0 = max(region.y0, math.floor((vis.y0 - p.ty) / p.k))
        sy1 = min(region.y1, math.ceil((vis.y1 - p.ty) / p.k))
        dx0, dy0 = round(p.k * sx0 + p.tx), round(p.k * sy0 + p.ty)
        dw, dh = max(1, round(p.k * (sx1 - sx0))), max(1, round(p.k * (sy1 - sy0)))
        small = resize_area(src[sy0:sy1, sx0:sx1], dh, dw)
        out = np.zeros((vis.height, vis.width) + src.shape[2:], src.dtype)
        ox0, oy0 = max(vis.x0, dx0), max(vis.y0, dy0)
        ox1, oy1 = min(vis.x1, dx0 + dw), min(vis.y1, dy0 + dh)
        if ox1 > ox0 and oy1 > oy0:
            out[oy0 - vis.y0:oy1 - vis.y0, ox0 - vis.x0:ox1 - vis.x0] = small[oy0 - dy0:oy1 - dy0, ox0 - dx0:ox1 - dx0]
        return out
    # enlarge: map each canvas pixel centre back into the source window (one affine warp)
    sx0 = max(region.x0, math.floor((vis.x0 + 0.5 - p.tx) / p.k - 0.5))
    sx1 = min(region.x1, math.floor((vis.x1 - 0.5 - p.tx) / p.k - 0.5) + 2)
    sy0 = max(region.y0, math.floor((vis.y0 + 0.5 - p.ty) / p.k - 0.5))
    sy1 = min(region.y1, math.floor((vis.y1 - 0.5 - p.ty) / p.k - 0.5) + 2)
    m = np.float32([[1.0 / p.k, 0.0, (vis.x0 + 0.5 - p.tx) / p.k - 0.5 - sx0],
                    [0.0, 1.0 / p.k, (vis.y0 + 0.5 - p.ty) / p.k - 0.5 - sy0]])
    return cv2.warpAffine(np.ascontiguousarray(src[sy0:sy1, sx0:sx1]), m, (vis.width, vis.height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def _on_canvas(src: np.ndarray, p: Placement, region: Box, vis: Box) -> np.ndarray:
    out = np.zeros((p.height, p.width) + src.shape[2:], src.dtype)
    if vis.width > 0 and vis.height > 0:
        out[vis.y0:vis.y1, vis.x0:vis.x1] = _resample(src, p, region, vis)
    return out


def refine_foreground(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colours in the soft edge (0 < alpha < 255) by blur-fusion; the input elsewhere.

    Only the colour estimate of alpha matting (Forte & Pitie's blur-fusion), not its trimap
    solve: the alpha is kept as predicted, the old background's colour is taken out of it.
    """
    from rmbg_backend.matting import estimate_foreground  # SciPy-backed module, only when asked

    soft = (alpha > 0) & (alpha < 255)
    if not soft.any():
        return rgb
    fg = estimate_foreground(rgb.astype(np.float32) * np.float32(1.0 / 255.0),
                             alpha.astype(np.float32) * np.float32(1.0 / 255.0))
    fg = np.clip(fg * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.where(soft[:, :, None], fg, rgb)


def gaussian_blur(alpha: np.ndarray, sigma: float) -> np.ndarray:
    """Float32 Gaussian blur with zeros outside; large sigmas run at a reduced scale."""
    a = alpha.astype(np.float32)
    if sigma <= 0:
        return a
    h, w = a.shape
    if sigma <= _DIRECT_BLUR_SIGMA:
        return cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    f = sigma / _DIRECT_BLUR_SIGMA
    sh, sw = max(1, round(h / f)), max(1, round(w / f))
    small = cv2.GaussianBlur(resize_area(a, sh, sw), (0, 0), sigma * sw / w, sigmaY=sigma * sh / h,
                             borderType=cv2.BORDER_CONSTANT)
    return resize_bilinear(small, h, w)


def shadow_alpha(alpha: np.ndarray, opacity: float, blur: float, offset: tuple[int, int]) -> np.ndarray:
    """Drop shadow cast from ``alpha``: blurred (CSS blur radius: sigma = blur / 2), shifted, scaled.

    Pixels shifted in from outside the canvas are empty; the result is uint8 like an alpha.
    """
    blurred = gaussian_blur(alpha, blur / 2.0)
    blurred *= np.float32(opacity)
    blurred += 0.5
    h, w = alpha.shape
    dx, dy = offset
    out = np.zeros((h, w), np.uint8)
    if abs(dx) < w and abs(dy) < h:
        out[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = np.clip(
            blurred[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)], 0, 255)
    return out


def shape(image: DecodedImage, alpha: np.ndarray, options: Options, foreground: np.ndarray | None = None,
          limits: Limits = Limits()) -> tuple[DecodedImage, np.ndarray, np.ndarray | None]:
    """(image, alpha, foreground) on the output canvas, for compose.

    With a shadow, the shadow is merged under the subject into one layer ("over" is
    associative), returned as the foreground colour with its alpha, so compose puts it on a
    colour or image background and leaves it semi-transparent in a transparent output.
    The input's alpha (``preserveAlpha``) is folded in here, before the subject box is found.
    """
    if not is_active(options):
        return image, alpha, foreground
    if options.preserveAlpha and image.alpha is not None:
        alpha = np.minimum(alpha, image.alpha)
    image = replace(image, alpha=None)
    full = Box(0, 0, image.width, image.height)
    subject = subject_box(alpha) or full
    region = crop_box(subject, options.cropMargin, image.width, image.height) if options.crop else full
    p = placement(options, subject, region, image.width, image.height)
    check_canvas(p.width, p.height, limits)
    if (p.k, p.tx, p.ty, p.width, p.height) != (1.0, 0.0, 0.0, image.width, image.height):
        vis = _visible(p, region)
        rgb = _on_canvas(image.rgb, p, region, vis)
        alpha = _on_canvas(alpha, p, region, vis)
        foreground = None if foreground is None else _on_canvas(foreground, p, region, vis)
        image = replace(image, rgb=rgb)
    else:
        vis = full
    if options.returnOnlyMask:
        return image, alpha, None
    if options.refineForeground and foreground is None and vis.width > 0 and vis.height > 0:
        # on the placed region only: the empty canvas around it is no background to learn from
        foreground = image.rgb.copy()
        window = (slice(vis.y0, vis.y1), slice(vis.x0, vis.x1))
        foreground[window] = refine_foreground(image.rgb[window], alpha[window])
    if options.shadow:
        layer = image.rgb if foreground is None else foreground
        shadow = shadow_alpha(alpha, options.shadowOpacity, options.shadowBlur, options.shadowOffset)
        foreground, alpha = over(layer, alpha, _SHADOW_RGB, shadow)
    return image, alpha, foreground


def capped_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """The size a ``maxPixels`` cap leaves: the same aspect, scaled down to fit (never up)."""
    if max_pixels is None or width * height <= max_pixels:
        return width, height
    k = math.sqrt(max_pixels / (width * height))
    w, h = max(1, math.floor(width * k)), max(1, math.floor(height * k))
    if w * h > max_pixels:  # one side hit its 1-pixel floor: the other takes what the cap leaves
        w, h = (max_pixels // h, h) if h == 1 else (w, max_pixels // w)
    return w, h


def cap_pixels(image: DecodedImage, alpha: np.ndarray, foreground: np.ndarray | None, max_pixels: int | None
               ) -> tuple[DecodedImage, np.ndarray, np.ndarray | None]:
    """The shaped output, area-downscaled to at most ``max_pixels`` (a preview size)."""
    width, height = capped_size(image.width, image.height, max_pixels)
    if (width, height) == (image.width, image.height):
        return image, alpha, foreground
    rgb = resize_area(image.rgb, height, width)
    small_alpha = None if image.alpha is None else resize_area(image.alpha, height, width)
    fg = None if foreground is None else resize_area(foreground, height, width)
    return replace(image, rgb=rgb, alpha=small_alpha), resize_area(alpha, height, width), fg


def foreground_box(alpha: np.ndarray) -> dict[str, int] | None:
    """The subject's box in the output (remove.bg's X-Foreground-* headers); None with no subject."""
    box = subject_box(alpha)
    return None if box is None else {"left": box.x0, "top": box.y0, "width": box.width, "height": box.height}
