import base64
import io

import numpy as np
import pytest
from PIL import Image

from rmbg_client.images import ImageInputError, UploadError, fetch_url, to_data_uri, to_image_bytes, upload


def test_every_input_form_gives_the_same_pixels(tmp_path, small_jpeg):
    path = tmp_path / "a.jpg"
    path.write_bytes(small_jpeg)
    b64 = base64.b64encode(small_jpeg).decode()
    assert to_image_bytes(small_jpeg) == small_jpeg
    assert to_image_bytes(path) == small_jpeg
    assert to_image_bytes(str(path)) == small_jpeg
    assert to_image_bytes(b64) == small_jpeg
    assert to_image_bytes(to_data_uri(small_jpeg, "image/jpeg")) == small_jpeg
    pixels = np.asarray(Image.open(io.BytesIO(small_jpeg)).convert("RGB"))
    for value in (Image.fromarray(pixels), pixels):
        decoded = np.asarray(Image.open(io.BytesIO(to_image_bytes(value))))
        np.testing.assert_array_equal(decoded, pixels)  # PNG: lossless


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("/no/such/file.jpg", "no such file"),
        ("not base64 !!", "not a path, URL, data URI or valid base64"),
        ("data:image/png,rawtext", "only base64 data URIs"),
        (np.zeros((4, 4, 2), np.uint8), "numpy arrays must be uint8"),
        (np.zeros((4, 4), np.float32), "numpy arrays must be uint8"),
        (12345, "unsupported type int"),
    ],
)
def test_bad_inputs_say_what_is_accepted(value, fragment):
    with pytest.raises(ImageInputError, match=fragment):
        to_image_bytes(value)


def test_url_input_with_limits(http_server, small_jpeg):
    http_server.handler.files["/a.jpg"] = small_jpeg
    assert to_image_bytes(f"{http_server.base}/a.jpg") == small_jpeg
    with pytest.raises(ImageInputError, match="over the 1,000-byte limit"):
        fetch_url(f"{http_server.base}/a.jpg", max_bytes=1000)
    with pytest.raises(ImageInputError, match="more than the 100,000-byte limit"):
        fetch_url(f"{http_server.base}/huge-undeclared", max_bytes=100_000)
    with pytest.raises(ImageInputError, match="HTTP 404"):
        fetch_url(f"{http_server.base}/missing.jpg")


def test_slow_url_times_out(http_server):
    with pytest.raises(ImageInputError, match="within 1 s|timed out|timeout 1 s"):
        fetch_url(f"{http_server.base}/slow", timeout=1.0)


def test_put_upload(http_server):
    upload(f"{http_server.base}/bucket/x.png?X-Amz-Signature=abc", b"PNGDATA", "image/png")
    assert http_server.handler.uploads["/bucket/x.png?X-Amz-Signature=abc"] == ("image/png", b"PNGDATA")
    with pytest.raises(UploadError, match="HTTP 403"):
        upload(f"{http_server.base}/forbidden/x.png", b"x", "image/png")
