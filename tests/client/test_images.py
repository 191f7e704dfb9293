import asyncio
import base64
import io

import numpy as np
import pytest
from PIL import Image

from rmbg_client.images import to_image_bytes, to_image_bytes_async
from rmbg_hosted.errors import ImageInputError
from rmbg_hosted.inputs import request_image, to_data_uri


def test_every_input_form_gives_the_same_pixels(tmp_path, small_jpeg):
    path = tmp_path / "a.jpg"
    path.write_bytes(small_jpeg)
    b64 = base64.b64encode(small_jpeg).decode()
    assert to_image_bytes(small_jpeg) == small_jpeg
    assert to_image_bytes(path) == small_jpeg
    assert to_image_bytes(str(path)) == small_jpeg
    assert to_image_bytes(b64) == small_jpeg
    assert to_image_bytes(to_data_uri(small_jpeg, "image/jpeg")) == small_jpeg
    assert asyncio.run(to_image_bytes_async(path)) == small_jpeg
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


def test_no_error_quotes_the_input(tmp_path):
    secret = "SECRET_TOKEN=hunter2hunter2"
    for value in (secret, f"data:text/plain;base64,{secret}!", secret + "/" + secret):
        for call in (lambda v: to_image_bytes(v), lambda v: asyncio.run(request_image(v))):
            with pytest.raises(ImageInputError) as info:
                call(value)
            assert "hunter2" not in str(info.value)
