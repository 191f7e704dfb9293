import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from rmbg_backend.decode import Limits, decode_image
from rmbg_backend.errors import RequestError


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def gradient(w=64, h=48) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4 % 256, y * 5 % 256, (x + y) % 256], axis=2).astype(np.uint8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but carries (almost) no pixel data: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_round_trip_exactly(fmt):
    rgb = gradient()
    kw = {"lossless": True} if fmt == "WEBP" else {}
    out = decode_image(encode(Image.fromarray(rgb), fmt, **kw))
    assert out.alpha is None
    np.testing.assert_array_equal(out.rgb, rgb)


def test_real_jpeg_keeps_size(small_jpeg):
    out = decode_image(small_jpeg)
    assert out.format == "JPEG" and out.rgb.dtype == np.uint8 and out.rgb.shape[2] == 3
    assert (out.width, out.height) == Image.open(io.BytesIO(small_jpeg)).size


def test_exif_orientation_is_applied():
    rgb = gradient(64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    data = encode(Image.fromarray(rgb), "JPEG", exif=exif, quality=95)
    out = decode_image(data)
    assert (out.width, out.height) == (48, 64)


def test_alpha_modes_keep_alpha():
    rgba = np.dstack([gradient(), np.full((48, 64), 77, np.uint8)])
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out.alpha, 77)
    la = Image.fromarray(rgba[:, :, :2].copy(), "LA")
    out = decode_image(encode(la, "PNG"))
    np.testing.assert_array_equal(out.alpha, rgba[:, :, 1])
    pal = Image.fromarray(gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    out = decode_image(encode(pal, "PNG", transparency=0))
    assert out.alpha is not None and set(np.unique(out.alpha)) <= {0, 255} and (out.alpha == 0).any()


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    gray16 = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    out = decode_image(encode(Image.fromarray(gray16), "PNG"))
    assert out.rgb.max() == round(gray16.max() * 255 / 65535)
    np.testing.assert_array_equal(out.rgb[:, :, 0], out.rgb[:, :, 2])


def test_cmyk_and_grayscale_become_rgb():
    cmyk = Image.fromarray(gradient()).convert("CMYK")
    assert decode_image(encode(cmyk, "JPEG")).rgb.shape == (48, 64, 3)
    assert decode_image(encode(Image.fromarray(gradient()[:, :, 0]), "PNG")).rgb.shape == (48, 64, 3)


def test_animated_gif_uses_first_frame():
    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buf.getvalue())
    assert abs(int(out.rgb.mean()) - 10) <= 2


def test_icc_profile_is_kept():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = decode_image(encode(Image.fromarray(gradient()), "PNG", icc_profile=icc))
    assert out.icc_profile == icc


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"hello world, not an image", "not a recognised image"),
        (png_header_only(30000, 30000), "over the limit"),
    ],
)
def test_bad_inputs_raise_request_errors(data, fragment):
    with pytest.raises(RequestError) as info:
        decode_image(data)
    assert info.value.field == "IMAGE" and fragment in info.value.message


def test_truncated_jpeg_is_reported(small_jpeg):
    with pytest.raises(RequestError) as info:
        decode_image(small_jpeg[: len(small_jpeg) // 3], field="BACKGROUND")
    assert info.value.field == "BACKGROUND" and "truncated" in info.value.message


def test_limits_are_configurable(small_jpeg):
    with pytest.raises(RequestError, match="bytes, over the limit"):
        decode_image(small_jpeg, limits=Limits(max_bytes=1000))
    with pytest.raises(RequestError, match="pixels"):
        decode_image(small_jpeg, limits=Limits(max_pixels=1000))


def test_output_limit_is_enforced(small_jpeg):
    from rmbg_backend import steps
    from rmbg_backend.families import family

    spec = family("isnet").spec(32)
    prepared = steps.preprocess(small_jpeg, b"{}", spec)
    mask = np.ones((1, 32, 32), np.float32)
    with pytest.raises(RequestError) as info:
        steps.postprocess(mask, prepared.pixels, prepared.meta, spec, limits=Limits(max_output_bytes=1000))
    assert info.value.field == "IMAGE_OUT" and "over the limit" in info.value.message


@pytest.mark.parametrize("data", [b"SECRET_TOKEN=hunter2\nPATH=/usr/bin\n", b"root:x:0:0:root:/root:/bin/bash\n",
                                  b"\x89PNG\r\n\x1a\n" + b"hunter2" * 10, b"GIF89a" + b"hunter2" * 10])
def test_errors_never_echo_input_bytes(data):
    """Issue 10 item 3: a file's first bytes came back in the error (hex of the first 8 bytes)."""
    with pytest.raises(RequestError) as info:
        decode_image(data)
    text = str(info.value)
    for leak in (data[:8].hex(), "hunter2", "SECRET", "root:x", repr(data[:8])[2:-1]):
        assert leak not in text, text
