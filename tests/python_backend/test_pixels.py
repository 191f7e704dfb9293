"""Preprocess, mask, compose and encode: exact or toleranced pixel values."""

import io
import json

import cv2
import numpy as np
import pytest
import torch  # noqa: F401 - reference semantics of F.interpolate below
import torch.nn.functional as F
from PIL import Image

from rmbg_backend import steps
from rmbg_backend.compose import compose, cover, over
from rmbg_backend.decode import DecodedImage
from rmbg_backend.encode import encode
from rmbg_backend.errors import RequestError
from rmbg_backend.families import family
from rmbg_backend.mask import NO_CONTRAST_RANGE, mask_to_alpha, post_process_mask
from rmbg_backend.options import Options
from rmbg_backend.resize import to_model_input
from tests.conftest import ROOT
from tests.hostile.builders import gray_profile, png_gray, srgb_profile, swapped_cmyk_profile
from tests.peak_memory import in_fresh_process, peak_bytes


def test_model_input_matches_the_rmbg14_recipe():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    spec = family("isnet").spec(64)
    ours = to_model_input(rgb, spec)
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    ref = F.interpolate(t, size=(64, 64), mode="bilinear", align_corners=False)[0].numpy() / 255 - 0.5
    assert ours.shape == (3, 64, 64) and ours.dtype == np.float32
    # OpenCV resizes uint8 with 11-bit fixed-point weights: within one grey level of the float path.
    assert np.abs(ours - ref).max() <= 1.0 / 255 + 1e-6


def test_birefnet_input_uses_imagenet_normalisation():
    rgb = np.full((32, 32, 3), 255, np.uint8)
    x = to_model_input(rgb, family("birefnet").spec(32))
    expected = (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x[:, 0, 0], expected, rtol=1e-6)


def test_uint8_model_pixels_normalise_to_the_float_input(small_jpeg):
    """gpu-torch's preprocess sends the resized pixels; scale/shift then give the CPU path's input."""
    from rmbg_backend import steps
    from rmbg_backend.resize import normalisation

    spec = family("birefnet").spec(64)
    pixels = steps.preprocess(small_jpeg, None, spec, model_input="uint8")
    floats = steps.preprocess(small_jpeg, None, spec)
    assert pixels.model_input.dtype == np.uint8 and pixels.model_input.shape == (3, 64, 64)
    scale, shift = normalisation(spec)
    x = pixels.model_input.astype(np.float32) * scale[:, None, None] - shift[:, None, None]
    assert np.array_equal(x, floats.model_input)
    with pytest.raises(ValueError, match="model_input must be one of float32, uint8"):
        steps.preprocess(small_jpeg, None, spec, model_input="fp16")


def test_minmax_mask_stretches_to_full_range_at_original_size():
    pred = np.linspace(0.2, 0.6, 16 * 16, dtype=np.float32).reshape(16, 16)
    alpha = mask_to_alpha(pred, 30, 40, "minmax")
    assert alpha.shape == (30, 40) and alpha.dtype == np.uint8
    assert alpha.min() == 0 and alpha.max() == 255
    raw = mask_to_alpha(pred, 30, 40, "none")
    assert 45 <= raw.min() <= 60 and 145 <= raw.max() <= 155


@pytest.mark.parametrize("level", [0.5, 1e-4, 0.99])
def test_constant_prediction_is_an_empty_mask(level):
    alpha = mask_to_alpha(np.full((8, 8), level, np.float32), 4, 4, "minmax")
    np.testing.assert_array_equal(alpha, 0)


def test_near_constant_prediction_is_not_stretched_into_noise():
    """A blank image: IS-Net predicts 1e-4 +- 2e-6. Stretching that gives a random 0..255 mask."""
    rng = np.random.default_rng(0)
    pred = (1e-4 + rng.uniform(-2e-6, 2e-6, (1, 1, 64, 64))).astype(np.float32)
    np.testing.assert_array_equal(mask_to_alpha(pred, 48, 80, "minmax"), 0)
    np.testing.assert_array_equal(mask_to_alpha(pred, 48, 80, "none"), 0)  # used as is: 1e-4 is 0


def test_threshold_sits_between_blank_and_real_predictions():
    """perf/prediction_range.py measured the real IS-Net weights: the threshold must stay far below
    the smallest range of a real photo and above the largest range of an input with no subject."""
    measured = json.loads((ROOT / "perf" / "results" / "prediction_range.json").read_text())
    assert measured["eval_photos"] == 31
    assert measured["blank_max_range"] < NO_CONTRAST_RANGE <= measured["eval_min_range"] / 5
    stretched = mask_to_alpha(np.linspace(0.0, 2 * NO_CONTRAST_RANGE, 64, dtype=np.float32).reshape(8, 8), 8, 8,
                              "minmax")
    assert stretched.min() == 0 and stretched.max() == 255  # just above the threshold: RMBG's recipe as before


def test_post_process_mask_is_binary_and_removes_specks():
    alpha = np.zeros((40, 40), np.uint8)
    alpha[10:30, 10:30] = 200
    alpha[2, 2] = 255  # a one-pixel speck
    out = post_process_mask(alpha)
    assert set(np.unique(out)) == {0, 255}
    assert out[2, 2] == 0 and out[20, 20] == 255


def _image(h=20, w=30):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[...] = (200, 10, 10)
    return DecodedImage(rgb, None, "PNG")


def test_compose_cutout_mask_and_colours():
    img = _image()
    alpha = np.zeros((20, 30), np.uint8)
    alpha[:, 15:] = 255
    px, mode = compose(img, alpha, Options())
    assert mode == "RGBA" and px.shape == (20, 30, 4)
    np.testing.assert_array_equal(px[:, :, 3], alpha)
    px, mode = compose(img, alpha, Options(returnOnlyMask=True))
    assert mode == "L" and px is alpha
    px, mode = compose(img, alpha, Options(rgba=(0, 0, 255, 255)))
    assert mode == "RGB" and tuple(px[0, 0]) == (0, 0, 255) and tuple(px[0, 29]) == (200, 10, 10)
    px, mode = compose(img, alpha, Options(outputFormat="JPG"))
    assert mode == "RGB" and tuple(px[0, 0]) == (255, 255, 255)


def test_translucent_background_colour_keeps_alpha():
    img = _image()
    alpha = np.zeros((20, 30), np.uint8)
    px, mode = compose(img, alpha, Options(rgba=(0, 255, 0, 128)))
    assert mode == "RGBA" and tuple(px[0, 0]) == (0, 255, 0, 128)


def test_over_is_porter_duff():
    """Straight foreground over a premultiplied background (colour 100 at alpha 128 is 50 premultiplied)."""
    fg = np.full((1, 1, 3), 200, np.uint8)
    fa, ba = 128 / 255, 128 / 255
    bg_premultiplied = np.full((1, 1, 3), 100 * ba, np.float32)
    rgb, a = over(fg, np.array([[128]], np.uint8), bg_premultiplied, np.array([[128]], np.uint8))
    out_a = fa + ba * (1 - fa)
    assert a[0, 0] == round(out_a * 255)
    assert abs(int(rgb[0, 0, 0]) - (200 * fa + 100 * ba * (1 - fa)) / out_a) <= 0.5


def test_over_in_bands_equals_one_pass():
    """Banding is an implementation detail: a tall image gives what one band would."""
    rng = np.random.default_rng(5)
    h, w = 700, 9
    fg, straight = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    a, ba = rng.integers(0, 256, (2, h, w), dtype=np.uint8)
    bg = np.round(straight * (ba[..., None] / 255.0)).astype(np.uint8)
    rgb, out_a = over(fg, a, bg, ba)
    af, baf = a[..., None] / 255.0, ba[..., None] / 255.0
    expected_a = af + baf * (1 - af)
    expected = np.divide(fg * af + bg * (1 - af), expected_a, out=np.zeros((h, w, 3)), where=expected_a > 0)
    assert np.abs(rgb - expected).max() <= 0.5 + 1e-3
    np.testing.assert_array_equal(out_a, np.clip(np.floor(expected_a[..., 0] * 255 + 0.5), 0, 255))


def test_preserve_alpha_takes_the_minimum():
    img = _image()
    img.alpha = np.full((20, 30), 100, np.uint8)
    alpha = np.full((20, 30), 255, np.uint8)
    alpha[0, 0] = 50
    px, _ = compose(img, alpha, Options(preserveAlpha=True, returnOnlyMask=True))
    assert px[0, 0] == 50 and px[5, 5] == 100


def test_background_image_covers_and_centres():
    bg = np.zeros((10, 100, 3), np.uint8)
    bg[:, 45:55] = 255  # a white stripe in the middle
    rgb, alpha = cover(DecodedImage(bg, None, "PNG"), 20, 30)
    assert rgb.shape == (20, 30, 3) and alpha is None
    assert rgb[10, 15].min() > 200 and rgb[10, 0].max() < 20


@pytest.mark.parametrize(("fmt", "mode", "ctype"), [("PNG", "RGBA", "image/png"),
                                                     ("WEBP", "RGBA", "image/webp"),
                                                     ("JPG", "RGB", "image/jpeg")])
def test_encode_formats(fmt, mode, ctype):
    px = np.dstack([_image().rgb, np.full((20, 30), 255, np.uint8)]) if mode == "RGBA" else _image().rgb
    data, content_type = encode(px, mode, fmt, 90)
    assert content_type == ctype
    im = Image.open(io.BytesIO(data))
    assert im.size == (30, 20) and im.format == {"JPG": "JPEG"}.get(fmt, fmt)


def test_png_is_lossless():
    rng = np.random.default_rng(2)
    px = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    data, _ = encode(px, "RGBA", "PNG")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), px)


def _reference_cover(bg: np.ndarray, height: int, width: int) -> np.ndarray:
    """The straightforward way (scale the whole background to cover, then centre-crop), as float."""
    bh, bw = bg.shape[:2]
    scale = max(height / bh, width / bw)
    sh, sw = max(height, round(bh * scale)), max(width, round(bw * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    full = cv2.resize(bg.astype(np.float32), (sw, sh), interpolation=interp)
    top, left = (sh - height) // 2, (sw - width) // 2
    return full[top:top + height, left:left + width]


@pytest.mark.parametrize(("bg_shape", "out_shape"), [((90, 160), (60, 50)), ((7, 30), (40, 40)), ((300, 20), (35, 64)),
                                                     ((31, 17), (31, 17)), ((3, 1000), (20, 20))])
def test_cover_matches_scaling_the_whole_background(bg_shape, out_shape):
    """Ramps in x and y: any error in scale or centring shows as a wrong value."""
    bh, bw = bg_shape
    y, x = np.mgrid[0:bh, 0:bw]
    bg = np.dstack([x * 255 // max(bw - 1, 1), y * 255 // max(bh - 1, 1), np.full((bh, bw), 77)]).astype(np.uint8)
    rgb, alpha = cover(DecodedImage(bg, None, "PNG"), *out_shape)
    assert rgb.shape == (*out_shape, 3) and alpha is None
    diff = np.abs(rgb.astype(np.float32) - _reference_cover(bg, *out_shape))
    assert diff.mean() < 1.5 and diff.max() < 6, (diff.mean(), diff.max())


def test_extreme_background_costs_no_more_than_the_output():
    """A 3000 x 1 background behind a 200 x 200 image: scaling it whole would build 600,000 x 200."""
    bg = np.zeros((1, 3000, 3), np.uint8)
    bg[0, 1500:] = (0, 0, 255)
    image = DecodedImage(np.zeros((200, 200, 3), np.uint8), None, "PNG")
    alpha = np.zeros((200, 200), np.uint8)
    result, peak = peak_bytes(lambda: compose(image, alpha, Options(), DecodedImage(bg, None, "PNG")))
    px, mode = result
    assert mode == "RGB" and px.shape == (200, 200, 3)
    assert peak < 4 * 1024 * 1024, f"{peak / 2**20:.0f} MB"
    assert tuple(px[100, 0]) == (0, 0, 0) and tuple(px[100, 199]) == (0, 0, 255)  # the 1.0 px centred window


@pytest.mark.parametrize("out_shape", [(40, 40), (2, 2)], ids=["enlarged", "shrunk"])
def test_background_alpha_is_premultiplied_before_resizing(out_shape):
    """Opaque red pixels beside transparent black ones: resized straight, the black bleeds in
    and the edge turns dark red; premultiplied, every visible pixel stays pure red."""
    bg = np.zeros((4, 4, 3), np.uint8)
    bg_alpha = np.zeros((4, 4), np.uint8)
    bg[::2, ::2] = (255, 0, 0)
    bg_alpha[::2, ::2] = 255
    image = DecodedImage(np.zeros((*out_shape, 3), np.uint8), None, "PNG")
    px, mode = compose(image, np.zeros(out_shape, np.uint8), Options(), DecodedImage(bg, bg_alpha, "PNG"))
    assert mode == "RGBA"
    visible = px[..., 3] > 8
    assert visible.any() and (~visible).any() or out_shape == (2, 2)
    assert (px[visible][:, 0] >= 250).all() and (px[visible][:, 1:3] <= 2).all(), px[visible][:, :3].min(0)


def test_mask_is_exact_grayscale_in_every_format_that_can_hold_one():
    rng = np.random.default_rng(4)
    mask = rng.integers(0, 256, (33, 47), dtype=np.uint8)
    png = Image.open(io.BytesIO(encode(mask, "L", "PNG")[0]))
    assert png.mode == "L"
    np.testing.assert_array_equal(np.asarray(png), mask)
    webp = np.asarray(Image.open(io.BytesIO(encode(mask, "L", "WEBP", quality=20)[0])).convert("RGB"))
    for channel in range(3):  # WebP has no gray mode: lossless, R = G = B = mask
        np.testing.assert_array_equal(webp[..., channel], mask)
    jpg = Image.open(io.BytesIO(encode(mask, "L", "JPG", quality=95)[0]))
    assert jpg.mode == "L" and np.abs(np.asarray(jpg).astype(int) - mask).mean() < 8  # JPEG is lossy by nature


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "JPG"])
def test_icc_profile_only_where_it_describes_the_output(fmt):
    srgb, cmyk = srgb_profile(), swapped_cmyk_profile()
    mask = np.full((8, 8), 200, np.uint8)
    rgb = np.full((8, 8, 3), 90, np.uint8)
    rgba = np.dstack([rgb, mask])
    colour = (rgb, "RGB") if fmt == "JPG" else (rgba, "RGBA")

    def icc(data: bytes) -> bytes | None:
        return Image.open(io.BytesIO(data)).info.get("icc_profile")

    assert icc(encode(*colour, fmt, icc_profile=srgb)[0]) == srgb
    assert icc(encode(*colour, fmt, icc_profile=cmyk)[0]) is None
    assert icc(encode(mask, "L", fmt, icc_profile=srgb)[0]) is None  # a mask never carries one
    assert icc(encode(mask, "L", fmt, icc_profile=gray_profile())[0]) is None


def test_webp_larger_than_its_format_is_a_request_error():
    px = np.zeros((2, 16384, 3), np.uint8)
    with pytest.raises(RequestError) as info:
        encode(px, "RGB", "WEBP")
    assert info.value.field == "outputFormat" and "16383" in info.value.message and "PNG or JPG" in info.value.message
    assert Image.open(io.BytesIO(encode(px, "RGB", "PNG")[0])).size == (16384, 2)


def test_preprocess_refuses_an_impossible_output_before_the_model_runs():
    data = png_gray(16384, 2)
    with pytest.raises(RequestError, match="outputFormat: WEBP holds at most 16383"):
        steps.preprocess(data, b'{"outputFormat": "WEBP"}', family("isnet").spec(32))
    assert steps.preprocess(data, b'{"outputFormat": "JPG"}', family("isnet").spec(32)).meta["width"] == 16384


PEAK_SIZE = (1500, 2000)


def postprocess_peak(options: bytes) -> tuple[dict[str, float], int]:
    """(postprocess's timings, its peak RSS in bytes) for a 2000 x 1500 photo under ``options``
    (``b"background"``: a 1000 x 750 BACKGROUND image)."""
    from tests.python_backend.test_high_quality import BrightEngine

    h, w = PEAK_SIZE
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (h // 10, w // 10, 3), dtype=np.uint8).repeat(10, 0).repeat(10, 1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    spec = family("isnet").spec(64)
    prepared = steps.preprocess(buf.getvalue(), b"{}" if options == b"background" else options, spec)
    background = png_gray(1000, 750) if options == b"background" else None
    mask = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(1, 64, 64)
    if b"highQuality" in options:  # a subject in the middle, so the second pass runs on its crop
        mask = np.zeros((1, 64, 64), np.float32)
        mask[:, 20:44, 16:48] = 1.0
    result, peak = peak_bytes(lambda: steps.postprocess(mask, prepared.pixels, prepared.meta, spec, background,
                                                        second_pass=BrightEngine()))
    assert isinstance(result, tuple), result
    return result[1]["timings"], peak


@pytest.mark.parametrize("options", [b"{}", b'{"rgba": [0, 0, 255, 128]}', b'{"outputFormat": "JPG"}',
                                     b'{"returnOnlyMask": true}', b"background", b'{"highQuality": true}'])
def test_postprocess_memory_per_output_pixel_is_bounded(options):
    """The README's per-request bound: postprocessing needs at most 20 bytes per output pixel
    (plus decoding the BACKGROUND, itself bounded by decode's 12 bytes per pixel); highQuality's
    second pass and decision included."""
    timings, peak = in_fresh_process(postprocess_peak, options)
    if b"highQuality" in options:
        assert timings["second_pass_ms"] > 0
    h, w = PEAK_SIZE
    budget = 20 * h * w + (12 * 1000 * 750 if options == b"background" else 0)
    assert peak < budget, f"{peak / (h * w):.1f} bytes per output pixel"


def test_roi_keeps_the_subject_inside_the_region_only():
    from rmbg_backend.mask import apply_roi

    alpha = np.full((10, 20), 255, np.uint8)
    out = apply_roi(alpha, (5, "20%", "50%", 8))
    assert out[2:8, 5:10].min() == 255 and out.sum() == 255 * 6 * 5
    assert apply_roi(alpha, (15, 0, 5, 10)).max() == 0  # an empty region: no subject anywhere
    assert apply_roi(alpha, (0, 0, 10_000, 10_000)).min() == 255  # clamped to the image
