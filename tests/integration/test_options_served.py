"""Every OPTIONS key and input kind through the real server, with asserted pixel properties."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rmbg_client import InvalidInputError, RmbgClient
from rmbg_hosted.fetch import FetchPolicy
from tests.hostile.builders import srgb_profile, swapped_cmyk_profile
from tests.integration.conftest import load

pytestmark = pytest.mark.triton


def test_mask_only_is_8bit_grayscale(client, photo, mask_alpha):
    src = load(photo)
    assert mask_alpha.dtype == np.uint8 and mask_alpha.shape == (src.height, src.width)
    assert mask_alpha.min() == 0 and mask_alpha.max() == 255  # min-max stretched
    jpg = load(client.remove(photo, {"returnOnlyMask": True, "outputFormat": "JPG"}).data)
    assert jpg.format == "JPEG" and jpg.mode == "L"


@pytest.mark.parametrize(("fmt", "pil_format", "mode"), [("PNG", "PNG", "RGBA"), ("WEBP", "WEBP", "RGBA"),
                                                          ("JPG", "JPEG", "RGB")])
def test_output_formats(client, photo, fmt, pil_format, mode):
    result = client.remove(photo, {"outputFormat": fmt})
    im = load(result.data)
    assert im.format == pil_format and im.mode == mode and im.size == load(photo).size
    assert result.content_type == {"PNG": "image/png", "WEBP": "image/webp", "JPG": "image/jpeg"}[fmt]


def test_jpg_without_colour_is_on_white(client, photo, mask_alpha):
    px = np.asarray(load(client.remove(photo, {"outputFormat": "JPG", "outputQuality": 95}).data)).astype(int)
    background = mask_alpha == 0
    assert np.abs(px[background] - 255).mean() < 3


def test_quality_changes_lossy_size(client, photo):
    small = client.remove(photo, {"outputFormat": "WEBP", "outputQuality": 20}).data
    large = client.remove(photo, {"outputFormat": "WEBP", "outputQuality": 99}).data
    assert len(small) < len(large)


def test_rgba_background_colour(client, photo, mask_alpha):
    px = np.asarray(load(client.remove(photo, {"rgba": [10, 200, 30, 255]}).data))
    assert px.shape[2] == 3
    assert (px[mask_alpha == 0] == np.array([10, 200, 30])).all()
    translucent = np.asarray(load(client.remove(photo, {"rgba": [0, 0, 255, 100]}).data))
    assert translucent.shape[2] == 4
    assert (translucent[mask_alpha == 0] == np.array([0, 0, 255, 100])).all()


def test_background_image_is_scaled_centred_and_composited(client, photo, mask_alpha, pairs):
    """Scaled to cover and centred: the exact centred window of the background, area-averaged
    (Pillow's BOX over a fractional source box) when shrunk, bilinear when enlarged."""
    src = load(photo)
    for bg_id in ("dis5k_pavilion_5795028920", "ecssd_0039"):  # shrunk 0.15x, enlarged 1.5x
        bg_bytes = next(p for p in pairs if p.id == bg_id).image.read_bytes()
        px = np.asarray(load(client.remove(photo, background=bg_bytes).data)).astype(int)
        assert px.shape == (src.height, src.width, 3)
        bg = load(bg_bytes).convert("RGB")
        scale = max(src.width / bg.width, src.height / bg.height)
        win_w, win_h = src.width / scale, src.height / scale
        box = ((bg.width - win_w) / 2, (bg.height - win_h) / 2, (bg.width + win_w) / 2, (bg.height + win_h) / 2)
        kind = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        expected = np.asarray(bg.resize(src.size, kind, box=box)).astype(int)
        sel = mask_alpha == 0
        assert np.abs(px[sel] - expected[sel]).mean() < 1.0, bg_id  # kernels' rounding differs by a level


def test_background_that_is_not_an_image(client, photo):
    with pytest.raises(InvalidInputError, match="BACKGROUND: is not a recognised image"):
        client.remove(photo, background=b"definitely not an image")


def test_post_process_mask_is_binary(client, photo):
    alpha = np.asarray(load(client.remove(photo, {"postProcessMask": True}).data))[:, :, 3]
    assert set(np.unique(alpha)) <= {0, 255}


def test_preserve_alpha_keeps_input_transparency(client, photo):
    rgba = np.asarray(load(photo).convert("RGBA")).copy()
    rgba[:, : rgba.shape[1] // 2, 3] = 0  # left half transparent in the input
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    kept = np.asarray(load(client.remove(buf.getvalue(), {"preserveAlpha": True}).data))[:, :, 3]
    assert (kept[:, : rgba.shape[1] // 2] == 0).all()
    ignored = np.asarray(load(client.remove(buf.getvalue()).data))[:, :, 3]
    assert ignored[:, : rgba.shape[1] // 2].max() > 0


def test_alpha_matting_lowers_error_against_ground_truth_alpha(client, pairs):
    p = next(p for p in pairs if p.id == "alphamatting_gt01")
    gt = np.asarray(Image.open(p.mask).convert("L")).astype(np.float32) / 255
    data = p.image.read_bytes()
    plain = np.asarray(load(client.remove(data).data))[:, :, 3] / 255.0
    matted_im = np.asarray(load(client.remove(data, {"alphaMatting": True, "alphaMattingErodeSize": 10}).data))
    matted = matted_im[:, :, 3] / 255.0
    assert np.abs(matted - gt).mean() < np.abs(plain - gt).mean() - 0.02
    assert 0.0 < ((matted > 0.02) & (matted < 0.98)).mean()  # a real soft edge


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


# kind -> (encode the source, the pixels the server must decode it to, mean |RGB| tolerance,
#          mean |alpha - alpha of the plain PNG| tolerance in grey levels)
def _kind(kind: str, src: Image.Image) -> tuple[bytes, np.ndarray, float, float]:
    rgb = np.asarray(src)
    gray = np.repeat(np.asarray(src.convert("L"))[:, :, None], 3, axis=2)
    if kind == "cmyk-jpeg":
        return _encode(src.convert("CMYK"), "JPEG", quality=95), rgb, 4, 3
    if kind == "16bit-png":
        return _encode(Image.fromarray(np.asarray(src.convert("L")).astype(np.uint16) * 257), "PNG"), gray, 0, 40
    if kind == "dark-16bit-png":  # maximum 199 of 65535: must stay black, not be stretched
        return _encode(Image.fromarray((np.asarray(src.convert("L")) // 64).astype(np.uint16)), "PNG"), \
            np.zeros_like(rgb), 0, 255
    if kind == "palette-gif":
        pal = src.convert("P", palette=Image.Palette.ADAPTIVE)
        return _encode(pal, "GIF"), np.asarray(pal.convert("RGB")), 0, 12
    if kind == "la-png":
        return _encode(src.convert("LA"), "PNG"), gray, 0, 40
    if kind == "animated-webp":
        return _encode(src, "WEBP", quality=90, save_all=True, append_images=[src.rotate(180)], duration=100), \
            rgb, 4, 3
    if kind == "heif":
        pytest.importorskip("pillow_heif").register_heif_opener()
        return _encode(src, "HEIF", quality=90), rgb, 5, 4
    if kind == "avif":
        return _encode(src, "AVIF", quality=90), rgb, 5, 4
    return _encode(src, {"tiff": "TIFF", "bmp": "BMP"}[kind]), rgb, 0, 0.5


@pytest.mark.parametrize("kind", ["cmyk-jpeg", "16bit-png", "dark-16bit-png", "palette-gif", "la-png",
                                  "animated-webp", "avif", "heif", "tiff", "bmp"])
def test_input_kinds_decode_to_the_right_pixels(client, photo, mask_alpha, kind):
    """The cut-out keeps every decoded pixel's colour (PNG, straight alpha), so its RGB shows what
    the server decoded; its alpha shows what the model saw."""
    src = load(photo).convert("RGB")
    data, expected, rgb_tol, alpha_tol = _kind(kind, src)
    out = np.asarray(load(client.remove(data).data)).astype(int)
    assert out.shape == (src.height, src.width, 4)
    assert np.abs(out[..., :3] - expected).mean() <= rgb_tol, kind
    assert np.abs(out[..., 3] - mask_alpha).mean() <= alpha_tol, kind


def test_mask_is_exact_in_webp_and_carries_no_profile(client, photo, mask_alpha):
    """A mask is the same 8-bit values in PNG and lossless WebP, and never gets the input's ICC."""
    icc = srgb_profile()  # LittleCMS stamps the creation time: build it once
    tagged = _encode(load(photo), "JPEG", quality=95, icc_profile=icc)
    png = load(client.remove(tagged, {"returnOnlyMask": True}).data)
    webp = load(client.remove(tagged, {"returnOnlyMask": True, "outputFormat": "WEBP", "outputQuality": 20}).data)
    assert png.mode == "L" and "icc_profile" not in png.info and "icc_profile" not in webp.info
    for channel in np.moveaxis(np.asarray(webp.convert("RGB")), 2, 0):
        np.testing.assert_array_equal(channel, np.asarray(png))
    cutout = load(client.remove(tagged).data)
    assert cutout.info.get("icc_profile") == icc  # an RGB profile on RGB output stays


def test_cmyk_profile_is_applied_not_passed_on(client):
    inks = Image.new("CMYK", (64, 48), (255, 0, 0, 0))  # cyan ink: magenta through the test profile
    data = _encode(inks, "JPEG", quality=98, icc_profile=swapped_cmyk_profile())
    out = load(client.remove(data).data)  # PNG keeps the colour under any alpha
    assert "icc_profile" not in out.info
    assert np.abs(np.asarray(out)[24, 32, :3].astype(int) - (255, 0, 255)).max() <= 8


def test_hosted_api_task_with_url_input_and_upload(client, photo, tmp_path):
    import http.server
    import threading

    store: dict[str, bytes] = {}

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(photo)))
            self.end_headers()
            self.wfile.write(photo)

        def do_PUT(self):  # noqa: N802
            store[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        task = {"taskType": "removeBackground", "taskUUID": "6a1d2f0c-1111-4c4c-9d9d-123456789abc",
                "inputs": {"image": f"{base}/in.jpg"}, "outputType": "URL", "outputFormat": "WEBP",
                "uploadEndpoint": f"{base}/bucket/out.webp?sig=1", "settings": {"postProcessMask": True}}
        with pytest.raises(InvalidInputError, match="loopback address"):  # server-side rules by default
            client.remove_background(task)
        client = RmbgClient(client.url, fetch_policy=FetchPolicy.allowing(["127.0.0.1/32"]))
        response = client.remove_background(task)
        assert response["taskType"] == "removeBackground" and response["taskUUID"] == task["taskUUID"]
        assert response["imageURL"] == f"{base}/bucket/out.webp" and len(response["imageUUID"]) == 36
        assert load(store["/bucket/out.webp?sig=1"]).format == "WEBP"
        task.update(outputType="dataURI", uploadEndpoint=None)
        del task["uploadEndpoint"]
        uri = client.remove_background(task)["imageDataURI"]
        assert uri.startswith("data:image/webp;base64,")
    finally:
        server.shutdown()
