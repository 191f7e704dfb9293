"""Output shaping (shape.py): boxes, canvases, placement, shadow profile, edge colours, AUTO, memory."""

from __future__ import annotations

import io
import json
import math
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from rmbg_backend import steps
from rmbg_backend.compose import compose
from rmbg_backend.decode import DecodedImage, Limits
from rmbg_backend.encode import encode, resolve_auto
from rmbg_backend.errors import RequestError
from rmbg_backend.families import family
from rmbg_backend.options import Options, parse_options
from rmbg_backend.shape import SUBJECT_ALPHA, Box, shadow_alpha, shape, subject_box
from tests.edges import edge_colour_error, extend_foreground, soft_alpha


def half(alpha: np.ndarray) -> Box:
    """Box at half coverage: where a resampled edge really is (bilinear spreads it by a pixel)."""
    return subject_box(alpha, 128)


def opts(**kw) -> Options:
    return parse_options(json.dumps(kw))


def scene(h: int = 150, w: int = 200, box: tuple[int, int, int, int] = (50, 40, 90, 100), seed: int = 0):
    """Random colours, a rectangular opaque subject [x0, x1) x [y0, y1)."""
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    alpha[y0:y1, x0:x1] = 255
    return DecodedImage(rgb, None, "PNG"), alpha


def test_subject_is_alpha_at_or_above_the_threshold():
    alpha = np.zeros((20, 30), np.uint8)
    alpha[5, 7] = SUBJECT_ALPHA
    alpha[12, 20] = SUBJECT_ALPHA - 1  # below: not subject
    alpha[15, 3] = 255
    assert subject_box(alpha) == Box(3, 5, 8, 16)
    assert subject_box(np.full((4, 4), SUBJECT_ALPHA - 1, np.uint8)) is None


def test_no_shaping_option_is_the_identity():
    image, alpha = scene()
    out = shape(image, alpha, Options())
    assert out[0] is image and out[1] is alpha and out[2] is None


def test_crop_with_pixel_margin_is_an_exact_crop():
    image, alpha = scene()
    out, a, fg = shape(image, alpha, opts(crop=True, cropMargin=10))
    assert a.shape == (60 + 20, 40 + 20) and fg is None
    np.testing.assert_array_equal(out.rgb, image.rgb[30:110, 40:100])
    np.testing.assert_array_equal(a, alpha[30:110, 40:100])


def test_crop_margin_percent_is_per_axis_share_of_the_box_and_clips_to_the_image():
    image, alpha = scene()
    _, a, _ = shape(image, alpha, opts(crop=True, cropMargin="10%"))
    assert a.shape == (60 + 2 * 6, 40 + 2 * 4)
    image, alpha = scene(box=(0, 130, 30, 150))  # touching the left and bottom borders
    _, a, _ = shape(image, alpha, opts(crop=True, cropMargin="25px"))
    assert a.shape == (20 + 25, 30 + 25)
    assert subject_box(a) == Box(0, 25, 30, 45)


def test_crop_without_subject_keeps_the_whole_image():
    image, _ = scene()
    _, a, _ = shape(image, np.zeros((150, 200), np.uint8), opts(crop=True, cropMargin=5))
    assert a.shape == (150, 200)


def test_output_size_scale_and_centre():
    image, alpha = scene()  # subject 40 x 60
    _, a, _ = shape(image, alpha, opts(outputSize=[300, 200], scale=0.5))
    assert a.shape == (200, 300)
    box = half(a)
    assert abs(box.height - 100) <= 1  # the limiting side: half the canvas height
    assert abs(box.width - 40 * 100 / 60) <= 1  # aspect kept
    assert abs((box.x0 + box.x1) / 2 - 150) <= 1 and abs((box.y0 + box.y1) / 2 - 100) <= 1


@pytest.mark.parametrize("size", [[64, 48], [900, 700]])  # shrink (area) and enlarge (affine warp)
def test_placed_pixels_follow_the_source(size):
    image, alpha = scene()
    out, a, _ = shape(image, alpha, opts(outputSize=size, scale=1.0))
    box = half(a)
    k = min(size[0] / 40, size[1] / 60)
    assert abs(box.width - 40 * k) <= 1.5 and abs(box.height - 60 * k) <= 1.5
    # a pixel in the middle of the placed subject shows the source pixel it came from
    ys, xs = (box.y0 + box.y1) // 2, (box.x0 + box.x1) // 2
    src = (40 + (ys + 0.5 - box.y0) / k - 0.5, 50 + (xs + 0.5 - box.x0) / k - 0.5)
    if k > 1:
        y, x = int(src[0]), int(src[1])
        lo = image.rgb[y:y + 2, x:x + 2].reshape(-1, 3).min(0)
        hi = image.rgb[y:y + 2, x:x + 2].reshape(-1, 3).max(0)
        assert ((out.rgb[ys, xs] >= lo - 1) & (out.rgb[ys, xs] <= hi + 1)).all()
    else:  # area average of the source block
        y, x = round(src[0]), round(src[1])
        block = image.rgb[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(int)
        assert (np.abs(out.rgb[ys, xs].astype(int) - block.mean(0)) <= 60).all()


@pytest.mark.parametrize(("position", "expected"), [
    ([0, 0], lambda b: (b.x0, b.y0) == (0, 0)),
    (["100%", "100%"], lambda b: (b.x1, b.y1) == (300, 200)),
    ([0, 100], lambda b: (b.x0, b.y1) == (0, 200)),
    ("center", lambda b: abs(b.x0 + b.x1 - 300) <= 1 and abs(b.y0 + b.y1 - 200) <= 1),
])
def test_position_places_the_subject_box_in_the_free_space(position, expected):
    image, alpha = scene()
    _, a, _ = shape(image, alpha, opts(outputSize=[300, 200], scale=0.5, position=position))
    assert expected(half(a)), half(a)


def test_position_original_keeps_the_subjects_relative_place():
    image, alpha = scene()  # subject at x 50..90 of 200, y 40..100 of 150
    _, a, _ = shape(image, alpha, opts(outputSize=[400, 300], scale=0.5, position="original"))
    box = half(a)
    fx, fy = 50 / (200 - 40), 40 / (150 - 60)
    assert abs(box.x0 - fx * (400 - box.width)) <= 1 and abs(box.y0 - fy * (300 - box.height)) <= 1
    # without outputSize and scale, "original" on the source canvas is the identity
    out, a, _ = shape(image, alpha, opts(position="original"))
    np.testing.assert_array_equal(a, alpha)
    np.testing.assert_array_equal(out.rgb, image.rgb)


def test_position_center_alone_moves_the_subject_to_the_middle_unscaled():
    image, alpha = scene()
    out, a, _ = shape(image, alpha, opts(position="center"))
    assert a.shape == alpha.shape and subject_box(a) == Box(80, 45, 120, 105)
    np.testing.assert_array_equal(out.rgb[45:105, 80:120], image.rgb[40:100, 50:90])


def test_output_size_alone_letterboxes_the_whole_image():
    image, alpha = scene()
    _, a, _ = shape(image, alpha, opts(outputSize=[400, 400]))
    assert a.shape == (400, 400)
    # 200x150 fitted into 400x400: k = 2, image at rows 50..350
    assert half(a) == Box(100, 130, 180, 250)


def test_canvas_over_the_limits_names_the_limit():
    image, alpha = scene()
    with pytest.raises(RequestError, match=r"max_pixels") as info:
        shape(image, alpha, opts(outputSize=[4000, 4000]), limits=Limits(max_pixels=1_000_000))
    assert info.value.field == "outputSize"
    with pytest.raises(RequestError, match=r"max_side"):
        shape(image, alpha, opts(outputSize=[5000, 10]), limits=Limits(max_side=4096))


def test_canvas_over_the_limits_is_refused_before_the_model(small_jpeg):
    spec = family("isnet").spec(64)
    with pytest.raises(RequestError, match="max_pixels") as info:
        steps.preprocess(small_jpeg, b'{"outputSize": [20000, 20000]}', spec)
    assert info.value.field == "outputSize"


def _shadow_scene(blur: float):
    """A 120-wide opaque square on a 400x400 transparent canvas; shadow 30 px down."""
    alpha = np.zeros((400, 400), np.uint8)
    alpha[100:220, 140:260] = 255
    rgb = np.full((400, 400, 3), 200, np.uint8)
    o = opts(shadow=True, shadowOpacity=0.6, shadowBlur=blur, shadowOffset=[0, 30], rgba=[255, 255, 255, 255])
    return DecodedImage(rgb, None, "PNG"), alpha, o


@pytest.mark.parametrize("blur", [12.0, 60.0])  # sigma 6 (direct) and 30 (reduced-scale blur)
def test_shadow_darkness_profile_below_the_subject(blur):
    image, alpha, o = _shadow_scene(blur)
    out, a, fg = shape(image, alpha, o)
    rgb, mode = compose(out, a, o, None, fg)
    assert mode == "RGB"
    sigma = blur / 2
    column = 1.0 - rgb[:, 200, 0].astype(np.float64) / 255.0  # darkness on white, through the centre
    edge = 220 + 30  # the shadow's own edge: the subject's bottom edge shifted down
    for y in range(220, 400):
        d = (y + 0.5) - edge
        expected = 0.6 * 0.5 * math.erfc(d / (sigma * math.sqrt(2)))  # blurred half-plane (square is wide)
        assert abs(column[y] - expected) < 0.025, (y, column[y], expected)
    assert np.all(np.diff(column[220:400]) <= 1.0 / 255)  # fades monotonically
    assert (rgb[100:220, 140:260] == 200).all()  # the subject covers its own shadow
    assert (rgb[:10, :] == 255).all()  # far above: plain background


def test_shadow_stays_semi_transparent_in_transparent_output():
    image, alpha, o = _shadow_scene(12.0)
    o = opts(shadow=True, shadowOpacity=0.6, shadowBlur=12, shadowOffset=[0, 30])
    out, a, fg = shape(image, alpha, o)
    pixels, mode = compose(out, a, o, None, fg)
    assert mode == "RGBA"
    below = pixels[235, 200]
    assert tuple(below[:3]) == (0, 0, 0) and abs(int(below[3]) - round(0.6 * 255)) <= 3
    assert pixels[260, 200, 3] < below[3] and pixels[5, 5, 3] == 0
    assert (pixels[100:220, 140:260, 3] == 255).all()


def test_shadow_alpha_shift_and_offsets_out_of_canvas():
    alpha = np.zeros((50, 60), np.uint8)
    alpha[10:20, 10:20] = 255
    s = shadow_alpha(alpha, 1.0, 0.0, (5, -3))
    assert subject_box(s) == Box(15, 7, 25, 17) and s.max() == 255
    assert shadow_alpha(alpha, 1.0, 0.0, (100, 0)).max() == 0


def test_refine_foreground_changes_only_the_soft_edge():
    image, alpha = scene()
    alpha = soft_alpha(alpha, 3.0)
    out, a, fg = shape(image, alpha, opts(refineForeground=True))
    np.testing.assert_array_equal(a, alpha)
    same = (alpha == 0) | (alpha == 255)
    np.testing.assert_array_equal(fg[same], image.rgb[same])
    assert (fg[~same] != image.rgb[~same]).any()


def test_refine_foreground_lowers_edge_colour_error_on_real_photos(pairs):
    """Real subjects composited over another eval photo, cut out and put on a third (perf/bench_refine.py)."""
    chosen = pairs[:6]  # GrabCut people and scenes, about 0.2 MP each
    plain, refined = [], []
    for i, pair in enumerate(chosen):
        photo = np.asarray(Image.open(pair.image).convert("RGB"))
        h, w = photo.shape[:2]
        mask = np.asarray(Image.open(pair.mask).convert("L"))
        old_bg, new_bg = (np.asarray(Image.open(chosen[(i + j) % len(chosen)].image).convert("RGB").resize((w, h)))
                          for j in (1, 2))
        errors = edge_colour_error(extend_foreground(photo, mask), soft_alpha(mask, 2.0), old_bg, new_bg)
        plain.append(errors[0])
        refined.append(errors[1])
    assert np.mean(refined) < 0.8 * np.mean(plain), (plain, refined)
    assert sum(r < p for p, r in zip(plain, refined, strict=True)) >= 5, (plain, refined)


def test_memory_is_bounded_by_the_output_canvas():
    h, w = 3000, 4000  # 12 MP source: 48 MB of pixels and alpha, allocated before tracing
    rgb = np.zeros((h, w, 3), np.uint8)
    large = np.zeros((h, w), np.uint8)
    large[1000:2000, 1500:2500] = 255
    large[1000:1010, 1500:2500] = 128  # a soft edge for refineForeground
    small = np.zeros((h, w), np.uint8)
    small[100:120, 200:220] = 255  # 20 x 20: enlarged 25x onto a 512 canvas
    image = DecodedImage(rgb, None, "PNG")
    import rmbg_backend.matting  # noqa: F401 - imported lazily by refineForeground; its import is no request's memory

    for alpha, o, canvas in [
        (large, opts(crop=True, outputSize=[128, 128], shadow=True, refineForeground=True), 128 * 128),
        (large, opts(outputSize=[256, 256], scale=1.0, shadow=True, refineForeground=True), 256 * 256),
        (large, opts(outputSize=[96, 64], scale=0.02, position="original"), 96 * 64),
        (small, opts(outputSize=[512, 512], scale=1.0, shadow=True), 512 * 512),  # enlarge: one affine warp
    ]:
        tracemalloc.start()
        out, a, fg = shape(image, alpha, o)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert a.size == canvas
        # about a hundred bytes per canvas pixel (float32 RGB temporaries), never the 12 MP source
        assert peak < 160 * canvas + 200_000, (o, peak)


def test_auto_format_choice():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255
    assert resolve_auto(rgba, "RGBA")[1:] == ("RGB", "JPG")  # opaque everywhere: JPG
    rgba[0, 0, 3] = 254
    assert resolve_auto(rgba, "RGBA")[1:] == ("RGBA", "PNG")  # any transparency: PNG
    assert resolve_auto(rgba[..., :3], "RGB")[1:] == ("RGB", "JPG")
    assert resolve_auto(rgba[..., 3], "L")[1:] == ("L", "PNG")  # a mask stays lossless
    data, content_type = encode(rgba, "RGBA", "AUTO")
    assert content_type == "image/png" and Image.open(io.BytesIO(data)).mode == "RGBA"


@pytest.mark.parametrize(("settings", "fmt", "mode"), [
    ({}, "PNG", "RGBA"),
    ({"rgba": [255, 0, 0, 255]}, "JPEG", "RGB"),
    ({"rgba": [255, 0, 0, 128]}, "PNG", "RGBA"),
    ({"returnOnlyMask": True}, "PNG", "L"),
])
def test_auto_format_through_the_steps(small_jpeg, settings, fmt, mode):
    spec = family("isnet").spec(64)
    prepared = steps.preprocess(small_jpeg, json.dumps({"outputFormat": "AUTO", **settings}).encode(), spec)
    mask = np.zeros((1, 64, 64), np.float32)
    mask[:, 16:48, 16:48] = 1.0
    data, info = steps.postprocess(mask, prepared.pixels, prepared.meta, spec)
    im = Image.open(io.BytesIO(data))
    assert im.format == fmt and im.mode == mode
    assert info["contentType"] == {"PNG": "image/png", "JPEG": "image/jpeg"}[fmt]


def test_steps_report_the_canvas_size(small_jpeg):
    spec = family("isnet").spec(64)
    prepared = steps.preprocess(small_jpeg, b'{"outputSize": [123, 45], "shadow": true}', spec)
    mask = np.zeros((1, 64, 64), np.float32)
    mask[:, 16:48, 16:48] = 1.0
    data, info = steps.postprocess(mask, prepared.pixels, prepared.meta, spec)
    assert Image.open(io.BytesIO(data)).size == (123, 45) and (info["width"], info["height"]) == (123, 45)


def test_preserve_alpha_is_folded_in_before_the_subject_box():
    image, alpha = scene()
    input_alpha = np.full(alpha.shape, 255, np.uint8)
    input_alpha[:, :70] = 0  # the left half of the subject is transparent in the input
    image = DecodedImage(image.rgb, input_alpha, "PNG")
    out, a, _ = shape(image, alpha, opts(crop=True, preserveAlpha=True))
    assert out.alpha is None and a.shape == (60, 20) and (a == 255).all()  # the box of what is left
    pixels, mode = compose(out, a, opts(crop=True, preserveAlpha=True))
    assert mode == "RGBA" and pixels.shape == (60, 20, 4)


def test_background_image_covers_the_shaped_canvas():
    image, alpha = scene()
    background = DecodedImage(np.full((50, 80, 3), (0, 0, 255), np.uint8), None, "PNG")
    o = opts(outputSize=[120, 90], scale=0.5)
    out, a, fg = shape(image, alpha, o)
    pixels, mode = compose(out, a, o, background, fg)
    assert mode == "RGB" and pixels.shape == (90, 120, 3)
    assert (pixels[0, 0] == (0, 0, 255)).all() and (pixels[a == 255] == out.rgb[a == 255]).all()


def test_max_pixels_scales_the_result_down_to_fit_and_never_up():
    from rmbg_backend.shape import cap_pixels, capped_size

    assert capped_size(1000, 500, 250_000) == (707, 353) and capped_size(400, 300, 250_000) == (400, 300)
    assert capped_size(1000, 500, None) == (1000, 500) and capped_size(100_000, 1, 10) == (10, 1)
    rgb = np.zeros((500, 1000, 3), np.uint8)
    rgb[:, 500:] = 255
    alpha = np.full((500, 1000), 200, np.uint8)
    image, small_alpha, fg = cap_pixels(DecodedImage(rgb, None, "PNG", None), alpha, None, 250_000)
    assert image.rgb.shape == (353, 707, 3) and small_alpha.shape == (353, 707) and fg is None
    assert image.width * image.height <= 250_000
    assert (small_alpha == 200).all() and image.rgb[0, 0, 0] == 0 and image.rgb[0, -1, 0] == 255  # area average


def test_the_foreground_box_is_the_subjects_box_in_the_output():
    from rmbg_backend.shape import foreground_box

    alpha = np.zeros((40, 60), np.uint8)
    alpha[10:20, 5:25] = 255
    assert foreground_box(alpha) == {"left": 5, "top": 10, "width": 20, "height": 10}
    assert foreground_box(np.zeros((4, 4), np.uint8)) is None
