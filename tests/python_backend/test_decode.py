import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from rmbg_backend.decode import Limits, decode_image
from rmbg_backend.errors import RequestError
from tests.hostile.builders import (
    animated,
    apng_declaring,
    exif_orientation,
    gif_frames,
    gray_profile,
    icns_holding,
    ico_holding,
    png_chunk,
    png_gray,
    srgb_profile,
    swapped_cmyk_profile,
    tiff,
    tiff_pages,
    webp_animation,
    webp_vp8l_declaring,
    zeros_deflate,
)
from tests.peak_memory import peak_bytes


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


# EXIF orientation -> the transform that displays the stored pixels upright (EXIF 2.32, 4.6.4),
# written with numpy independently of Pillow's table.
ORIENTATIONS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, -1),  # rotated 90 clockwise
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),  # mirrored along the anti-diagonal
    8: lambda a: np.rot90(a, 1),  # rotated 90 counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_every_exif_orientation_at_pixel_level(orientation):
    """Every pixel lands where the orientation puts it (lossless PNG with an eXIf chunk)."""
    rgb = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(3, 5, 3) * 5  # all pixels distinct, not square
    data = encode(Image.fromarray(rgb), "PNG", exif=exif_orientation(orientation))
    np.testing.assert_array_equal(decode_image(data).rgb, ORIENTATIONS[orientation](rgb))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_of_a_real_jpeg(small_jpeg, orientation):
    src = np.asarray(Image.open(io.BytesIO(small_jpeg)).convert("RGB"))
    data = encode(Image.fromarray(src), "JPEG", quality=95, exif=exif_orientation(orientation))
    out = decode_image(data).rgb.astype(int)
    expected = ORIENTATIONS[orientation](src).astype(int)
    assert out.shape == expected.shape and np.abs(out - expected).mean() < 3


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


def _gray(data: bytes) -> np.ndarray:
    out = decode_image(data).rgb
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    return out[..., 0].astype(int)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_is_scaled_by_its_declared_range(fmt):
    """65535 is white whatever the data holds: a dark image (maximum 199) stays dark."""
    values = np.array([[0, 199, 257, 32768, 65535]], np.uint16)
    np.testing.assert_array_equal(_gray(encode(Image.fromarray(values), fmt)), [[0, 1, 1, 128, 255]])
    dark = np.full((30, 40), 199, np.uint16)
    assert _gray(encode(Image.fromarray(dark), fmt)).max() == 1


@pytest.mark.parametrize(("pixels", "expected"), [
    (np.array([[0, 70_000, 2**30, 2**31 - 1]], np.int32), [[0, 0, 128, 255]]),  # signed 32-bit: 0..2^31-1
    (np.array([[-5, 0, 2**31 - 1]], np.int32), [[0, 0, 255]]),  # negatives are black
    (np.array([[0, 2**31, 2**32 - 1]], np.uint32), [[0, 128, 255]]),  # unsigned 32-bit
    (np.array([[-300, 0, 16384, 32767]], np.int16), [[0, 0, 128, 255]]),  # signed 16-bit
    (np.array([[0.0, 0.25, 0.5, 1.0, 2.5, -1.0]], np.float32), [[0, 64, 128, 255, 255, 0]]),  # float: 0..1
    (np.array([[np.nan, np.inf, -np.inf]], np.float32), [[0, 255, 0]]),
])
def test_tiff_integer_and_float_samples_use_the_declared_range(pixels, expected):
    np.testing.assert_array_equal(_gray(tiff([{"pixels": pixels}])), expected)


def test_float_tiff_with_declared_sample_range():
    pixels = np.array([[-1.0, 0.0, 1.0, 3.0]], np.float32)
    data = tiff([{"pixels": pixels, "tags": {340: ("d", [-1.0]), 341: ("d", [1.0])}}])
    np.testing.assert_array_equal(_gray(data), [[0, 128, 255, 255]])


def test_white_is_zero_tiff_is_inverted():
    data = tiff([{"pixels": np.array([[0, 65535]], np.uint16), "photometric": 0}])
    np.testing.assert_array_equal(_gray(data), [[255, 0]])


@pytest.mark.parametrize("samples", [3, 4])
def test_sixteen_bit_colour_tiff(samples):
    px = np.zeros((2, 3, samples), np.uint16)
    px[..., :3] = (0, 0x8000, 0xFFFF)
    if samples == 4:
        px[..., 3] = 0xFFFF
    out = decode_image(tiff([{"pixels": px}]))
    np.testing.assert_array_equal(out.rgb[0, 0], (0, 128, 255))
    if samples == 4:
        np.testing.assert_array_equal(out.alpha, 255)


def test_cmyk_without_profile_keeps_its_colours():
    """Untagged CMYK: the uncalibrated complement, so RGB -> CMYK -> RGB returns the colours."""
    rgb = np.zeros((16, 32, 3), np.uint8)
    rgb[:, :8] = (200, 30, 30)
    rgb[:, 8:16] = (30, 180, 60)
    rgb[:, 16:24] = (40, 60, 220)
    rgb[:, 24:] = (250, 250, 250)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    for fmt, tol in (("TIFF", 0), ("JPEG", 4)):
        out = decode_image(encode(cmyk, fmt, quality=98) if fmt == "JPEG" else encode(cmyk, fmt))
        assert out.icc_profile is None
        for x in (4, 12, 20, 28):
            assert np.abs(out.rgb[8, x].astype(int) - rgb[8, x]).max() <= tol, (fmt, x, out.rgb[8, x])


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_with_profile_is_colour_managed(fmt):
    """The test profile maps cyan ink to magenta: only a decoder that uses it gets magenta,
    and the CMYK profile must not survive (the output is RGB)."""
    inks = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    out = decode_image(encode(inks, fmt, icc_profile=swapped_cmyk_profile(), **({"quality": 98} if fmt == "JPEG"
                                                                               else {})))
    assert np.abs(out.rgb[8, 8].astype(int) - (255, 0, 255)).max() <= 6, out.rgb[8, 8]
    assert out.icc_profile is None


def test_grayscale_with_gray_profile_is_converted_to_srgb():
    """A linear-light gray profile: code 128 is 50 % luminance, sRGB code 188."""
    data = encode(Image.new("L", (8, 8), 128), "PNG", icc_profile=gray_profile(1.0))
    out = decode_image(data)
    assert np.abs(out.rgb.astype(int) - 188).max() <= 1 and out.icc_profile is None


def test_cielab_tiff_is_converted_to_srgb():
    px = np.array([[[128, 0, 0], [255, 0, 0], [0, 0, 0]]], np.uint8)  # L* 50 / 100 / 0, neutral
    out = decode_image(tiff([{"pixels": px, "photometric": 8}])).rgb.astype(int)
    assert np.abs(out[0, 0] - 119).max() <= 1 and out[0, 1].min() >= 253 and out[0, 2].max() <= 1


@pytest.mark.parametrize(("image", "profile", "kept"), [
    ("RGB", "srgb", True),
    ("RGB", "gray", False),
    ("RGB", "cmyk", False),
    ("L", "srgb", False),
    ("RGB", "garbage", False),
])
def test_only_a_profile_that_matches_the_pixels_is_kept(image, profile, kept):
    icc = {"srgb": srgb_profile(), "gray": gray_profile(2.2), "cmyk": swapped_cmyk_profile(),
           "garbage": b"\0" * 36 + b"acsp" + bytes(200)}[profile]
    im = Image.fromarray(gradient()) if image == "RGB" else Image.fromarray(gradient()[:, :, 0])
    out = decode_image(encode(im, "PNG", icc_profile=icc))
    assert (out.icc_profile == icc) if kept else out.icc_profile is None
    expected = gradient() if image == "RGB" else np.repeat(gradient()[:, :, :1], 3, axis=2)
    np.testing.assert_array_equal(out.rgb, expected)  # an ignored profile changes no pixel


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


# --- bombs inside containers, and Pillow's own limit -------------------------------------------

MB = 1 << 20


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """79 KB of PNG holding 9000 x 9000 gray pixels (81 MB decoded)."""
    return png_gray(9000, 9000)


@pytest.mark.parametrize(("container", "name"), [("ico", "ICO"), ("cur", "CUR"), ("icns", "ICNS")])
def test_containers_are_refused_before_any_plugin_decodes(bomb_png, container, name):
    data = {"ico": lambda: ico_holding(bomb_png), "cur": lambda: ico_holding(bomb_png, magic=2),
            "icns": lambda: icns_holding(bomb_png)}[container]()
    result, peak = peak_bytes(lambda: decode_image(data))
    assert isinstance(result, RequestError) and name in result.message and "accepted: JPEG" in result.message
    assert peak < 16 * MB, f"{peak / MB:.0f} MB"


def test_pillow_keeps_a_pixel_limit_equal_to_ours(small_jpeg):
    """Plugins that decode inside Image.open meet Pillow's own check: it must stay on, at our limit."""
    decode_image(small_jpeg, limits=Limits(max_pixels=40_000_000))
    assert Image.MAX_IMAGE_PIXELS == 40_000_000
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(io.BytesIO(png_header_only(8000, 6000)))
    decode_image(small_jpeg)
    assert Image.MAX_IMAGE_PIXELS == Limits().max_pixels


def test_a_frame_larger_than_the_gif_screen_is_refused():
    """GIF grows its size to the first frame inside Image.open: Pillow's check stops it there."""
    with pytest.raises(RequestError, match="over the limit of 50,000,000 pixels"):
        decode_image(gif_frames([(20000, 20000)], (10, 10)))


@pytest.mark.parametrize("kind", ["GIF", "PNG", "WEBP", "MPO", "TIFF"])
def test_frame_count_is_bounded(kind):
    """At the limit: decoded (first frame); one over: refused, naming the limit."""
    def build(n):
        return tiff_pages(n) if kind == "TIFF" else animated(kind, n, (4, 4))

    limits = Limits(max_frames=20)
    assert decode_image(build(20), limits=limits).width >= 4
    with pytest.raises(RequestError, match="frames, over the limit of 20"):
        decode_image(build(21), limits=limits)


def test_declared_frame_counts_are_refused_without_walking_them():
    with pytest.raises(RequestError, match="declares 1,000,000 frames"):
        decode_image(apng_declaring(1_000_000))


def test_webp_frames_are_counted_before_libwebp_indexes_them():
    """A million one-pixel frames (46 MB) cost libwebp's demuxer 135 MB while opening."""
    data = webp_animation(1_000_000)
    result, peak = peak_bytes(lambda: decode_image(data))
    assert isinstance(result, RequestError) and "has more than 1,000 frames" in result.message
    assert peak < 16 * MB, f"{peak / MB:.0f} MB"


@pytest.mark.parametrize("data", [webp_vp8l_declaring(16384, 4000), webp_animation(1, canvas=(9000, 9000))],
                         ids=["lossless-16384x4000", "animated-canvas-9000x9000"])
def test_webp_canvas_is_checked_before_libwebp_allocates_it(data):
    """Both are between one and two times our pixel limit, where Pillow's early check is silent."""
    result, peak = peak_bytes(lambda: decode_image(data))
    assert isinstance(result, RequestError) and "over the limit" in result.message
    assert peak < 16 * MB, f"{peak / MB:.0f} MB"


def test_idat_that_inflates_far_beyond_the_image_is_not_inflated():
    """A 64 x 64 PNG whose IDAT holds 1 GB of zlib'd zeros: decoding stops at the last row."""
    data = png_gray(64, 64, idat=zeros_deflate(1 << 30))
    result, peak = peak_bytes(lambda: decode_image(data))
    assert not isinstance(result, Exception) and result.rgb.shape == (64, 64, 3) and result.rgb.max() == 0
    assert peak < 16 * MB, f"{peak / MB:.0f} MB"


def test_png_text_chunks_cannot_inflate_to_tens_of_megabytes():
    chunks = b"".join(png_chunk(b"zTXt", b"k%d\0\0" % i + zeros_deflate(15 << 16, block=1 << 16)) for i in range(64))
    data = png_gray(16, 16, extra=chunks)
    result, peak = peak_bytes(lambda: decode_image(data))
    assert isinstance(result, RequestError) and result.field == "IMAGE"
    assert peak < 16 * MB, f"{peak / MB:.0f} MB"


def test_decode_memory_per_pixel_is_bounded():
    """The documented per-request bound (README): decoding costs at most 12 bytes per pixel."""
    data = png_gray(4000, 3000)
    result, peak = peak_bytes(lambda: decode_image(data))
    assert result.rgb.shape == (3000, 4000, 3)
    assert peak < 12 * 12_000_000, f"{peak / 12e6:.1f} bytes per pixel"
