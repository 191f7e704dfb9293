"""Output shaping (README, "Output shaping") through the real Triton server and the real `rmbg remove`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rmbg_backend.shape import SUBJECT_ALPHA, subject_box
from rmbg_client import InvalidInputError, RmbgClient
from tests.integration.conftest import load

pytestmark = pytest.mark.triton


def rgba(client, photo, options) -> np.ndarray:
    return np.asarray(load(client.remove(photo, options).data))


def test_crop_is_the_subject_box_plus_margin(client, photo, mask_alpha):
    box = subject_box(mask_alpha, SUBJECT_ALPHA)
    h, w = mask_alpha.shape
    out = rgba(client, photo, {"crop": True, "cropMargin": 12})
    expected = (min(h, box.y1 + 12) - max(0, box.y0 - 12), min(w, box.x1 + 12) - max(0, box.x0 - 12))
    assert out.shape == (*expected, 4)
    full = rgba(client, photo, {})
    np.testing.assert_array_equal(out, full[max(0, box.y0 - 12):box.y1 + 12, max(0, box.x0 - 12):box.x1 + 12])
    pct = rgba(client, photo, {"crop": True, "cropMargin": "10%"})
    mx, my = round(0.1 * box.width), round(0.1 * box.height)
    assert pct.shape[:2] == (min(h, box.y1 + my) - max(0, box.y0 - my), min(w, box.x1 + mx) - max(0, box.x0 - mx))


def test_canvas_scale_and_centre(client, photo):
    out = rgba(client, photo, {"outputSize": [500, 300], "scale": 0.6, "position": "center"})
    assert out.shape == (300, 500, 4)
    box = subject_box(out[:, :, 3], 128)
    assert max(box.width / 500, box.height / 300) == pytest.approx(0.6, abs=0.02)  # the limiting side
    assert abs((box.x0 + box.x1) / 2 - 250) <= 3 and abs((box.y0 + box.y1) / 2 - 150) <= 3


def test_position_bottom_left_and_info_size(client, photo):
    result = client.remove(photo, {"outputSize": [400, 400], "scale": 0.5, "position": [0, 100]})
    alpha = np.asarray(load(result.data))[:, :, 3]
    box = subject_box(alpha, 128)
    assert box.x0 <= 2 and box.y1 >= 398
    assert (result.info["width"], result.info["height"]) == (400, 400)


def test_shadow_on_a_colour_and_in_a_transparent_output(client, photo):
    room = {"outputSize": [400, 400], "scale": 0.6}  # the subject centred with free space around it
    options = {**room, "shadow": True, "shadowOpacity": 0.7, "shadowBlur": 16, "shadowOffset": [0, 60]}
    on_white = rgba(client, photo, {**options, "rgba": [255, 255, 255, 255]}).astype(int)
    cut = rgba(client, photo, room)[:, :, 3]
    # where the shadow is fully dark: the subject's interior (eroded by 3 sigma) moved 60 px down,
    # outside the subject itself; and far from any shadow: 3 sigma away from the moved subject
    import cv2

    shifted = np.zeros_like(cut)
    shifted[60:] = cut[:-60]
    core = cv2.erode((shifted > 128).astype(np.uint8), np.ones((49, 49), np.uint8)).astype(bool)
    full = core & (cut == 0)
    clear = ~cv2.dilate((shifted > 0).astype(np.uint8), np.ones((51, 51), np.uint8)).astype(bool) & (cut == 0)
    assert full.sum() > 50 and clear.sum() > 1000
    darkness = 255 - on_white[..., 0]
    assert darkness[full].mean() == pytest.approx(0.7 * 255, abs=4)
    assert darkness[clear].max() <= 1
    transparent = rgba(client, photo, options).astype(int)
    assert (transparent[full][:, :3] <= 1).all()  # black, semi-transparent
    assert transparent[full][:, 3].mean() == pytest.approx(0.7 * 255, abs=4)
    assert (transparent[clear][:, 3] == 0).all()


def test_refine_foreground_changes_only_soft_pixels(client, photo):
    plain = rgba(client, photo, {})
    refined = rgba(client, photo, {"refineForeground": True})
    np.testing.assert_array_equal(refined[:, :, 3], plain[:, :, 3])
    a = plain[:, :, 3]
    hard = (a == 0) | (a == 255)
    np.testing.assert_array_equal(refined[hard][:, :3], plain[hard][:, :3])
    assert (refined[~hard][:, :3] != plain[~hard][:, :3]).any()


@pytest.mark.parametrize(("options", "pil_format", "mode"), [
    ({}, "PNG", "RGBA"),
    ({"rgba": [20, 40, 60, 255]}, "JPEG", "RGB"),
    ({"rgba": [20, 40, 60, 100]}, "PNG", "RGBA"),
    ({"returnOnlyMask": True}, "PNG", "L"),
])
def test_auto_format(client, photo, options, pil_format, mode):
    result = client.remove(photo, {"outputFormat": "AUTO", **options})
    im = load(result.data)
    assert (im.format, im.mode) == (pil_format, mode)
    assert result.content_type == {"PNG": "image/png", "JPEG": "image/jpeg"}[pil_format]


def test_canvas_over_the_output_limit_is_refused_naming_it(client, photo):
    with pytest.raises(InvalidInputError, match=r"outputSize: .*max_pixels"):
        client.remove(photo, {"outputSize": [10000, 10000]})
    with pytest.raises(InvalidInputError, match=r"scale: must be in 0\.\.1"):
        client.remove(photo, {"scale": 3})
    assert client.remove(photo, {"crop": True}).info["width"] > 0  # the server keeps serving


def test_every_key_over_http(triton, photo):
    http = RmbgClient(triton.http_url.removeprefix("http://"), "http")
    result = http.remove(photo, {"crop": True, "cropMargin": "5%", "outputSize": [256, 256], "scale": 0.9,
                                 "position": "original", "shadow": True, "shadowOpacity": 0.4, "shadowBlur": 10,
                                 "shadowOffset": [5, 5], "refineForeground": True, "outputFormat": "AUTO"})
    im = load(result.data)
    assert im.size == (256, 256) and im.format == "PNG" and im.mode == "RGBA"


def test_cli_remove_with_every_shaping_flag(triton, photo, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "teddy.jpg").write_bytes(photo)
    (src / "teddy2.jpg").write_bytes(photo)
    base = [sys.executable, "-m", "rmbg_cli.main", "remove", str(src), "--url", triton.grpc_url]
    proc = subprocess.run(
        [*base, "-o", str(tmp_path / "shaped"), "--format", "auto", "--crop", "--crop-margin", "10%",
         "--output-size", "300x200", "--scale", "0.8", "--position", "50%,100%", "--shadow", "--shadow-opacity",
         "0.5", "--shadow-blur", "12", "--shadow-offset=-6,4", "--refine-foreground"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    im = load((tmp_path / "shaped" / "teddy.png").read_bytes())  # transparent: AUTO chose PNG
    assert im.size == (300, 200) and im.mode == "RGBA"
    box = subject_box(np.asarray(im)[:, :, 3], 128)
    assert box.height == pytest.approx(160, abs=3) and box.y1 >= 198  # 0.8 of the height, at the bottom
    proc = subprocess.run([*base, "-o", str(tmp_path / "flat"), "--format", "auto", "--bg-color", "255,255,255,255"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["teddy.jpg", "teddy2.jpg"]  # opaque: JPG
    assert load((tmp_path / "flat" / "teddy.jpg").read_bytes()).format == "JPEG"
    single = [*base[:4], str(src / "teddy.jpg"), "--url", triton.grpc_url, "-o", str(tmp_path / "one.png"),
              "--format", "auto", "--bg-color", "255,255,255,255"]
    proc = subprocess.run(single, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and f"written to {tmp_path / 'one.jpg'}" in proc.stdout, proc.stderr
    assert not (tmp_path / "one.png").exists() and load((tmp_path / "one.jpg").read_bytes()).format == "JPEG"

