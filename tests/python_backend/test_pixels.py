"""Preprocess, mask, compose and encode: exact or toleranced pixel values."""

import io

import numpy as np
import pytest
import torch  # noqa: F401 - reference semantics of F.interpolate below
import torch.nn.functional as F
from PIL import Image

from rmbg_backend.compose import compose, cover, over
from rmbg_backend.decode import DecodedImage
from rmbg_backend.encode import encode
from rmbg_backend.families import family
from rmbg_backend.mask import mask_to_alpha, post_process_mask
from rmbg_backend.options import Options
from rmbg_backend.resize import to_model_input


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


def test_constant_mask_does_not_divide_by_zero():
    alpha = mask_to_alpha(np.full((8, 8), 0.5, np.float32), 4, 4, "minmax")
    np.testing.assert_array_equal(alpha, 128)


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
    fg = np.full((1, 1, 3), 200, np.uint8)
    bg = np.full((1, 1, 3), 100, np.uint8)
    rgb, a = over(fg, np.array([[128]], np.uint8), bg, np.array([[128]], np.uint8))
    fa, ba = 128 / 255, 128 / 255
    out_a = fa + ba * (1 - fa)
    assert a[0, 0] == round(out_a * 255)
    assert abs(int(rgb[0, 0, 0]) - (200 * fa + 100 * ba * (1 - fa)) / out_a) <= 0.5


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
