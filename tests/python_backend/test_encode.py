"""Our PNG encoder: exact round trips through Pillow's decoder, ICC kept, strips joined correctly."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from rmbg_backend import encode as enc
from rmbg_backend.encode import encode_png
from tests.conftest import eval_pairs


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()  # Pillow checks every chunk CRC and the zlib stream (adler32) while loading
    return im


@pytest.mark.parametrize(("shape", "mode"), [((7, 5), "L"), ((9, 13, 3), "RGB"), ((11, 3, 4), "RGBA"),
                                             ((1, 1, 4), "RGBA"), ((1, 257, 3), "RGB")])
def test_small_images_round_trip_exactly(shape, mode):
    px = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    im = decode(encode_png(px, mode))
    assert im.mode == mode and im.format == "PNG"
    np.testing.assert_array_equal(np.asarray(im), px)


def test_large_image_is_deflated_in_parallel_strips_that_form_one_valid_stream(monkeypatch):
    monkeypatch.setattr(enc, "_STRIP_BYTES", 4096)  # force many strips on a modest image
    monkeypatch.setattr(enc.os, "cpu_count", lambda: 4)
    px = np.random.default_rng(3).integers(0, 256, (301, 97, 4), dtype=np.uint8)
    px[100:200] = 7  # runs, so the RLE strategy has something to do
    data = encode_png(px, "RGBA")
    np.testing.assert_array_equal(np.asarray(decode(data)), px)
    # the IDAT payload is one zlib stream that zlib itself accepts, checksum included
    idat = data[data.index(b"IDAT") + 4: data.index(b"IEND") - 8]
    rows = zlib.decompress(idat)
    assert len(rows) == 301 * (97 * 4 + 1) and rows[0] == 1  # every row uses the Sub filter


def test_icc_profile_is_kept():
    icc = b"\x00" * 36 + b"acsp" + bytes(range(200))  # opaque bytes: PNG stores them as given
    px = np.zeros((4, 4, 3), np.uint8)
    assert decode(encode_png(px, "RGB", icc)).info["icc_profile"] == icc


def test_refuses_modes_png_output_does_not_use():
    with pytest.raises(ValueError, match="uint8 L, RGB or RGBA"):
        encode_png(np.zeros((2, 2, 2), np.uint8), "LA")
    with pytest.raises(ValueError, match="uint8 L, RGB or RGBA"):
        encode_png(np.zeros((2, 2), np.uint16), "L")


def test_real_cutout_is_smaller_than_raw_and_close_to_pillow_level_1():
    pair = next(p for p in eval_pairs() if p.id == "grabcut_person1")
    px = np.dstack([np.asarray(Image.open(pair.image).convert("RGB")), np.asarray(Image.open(pair.mask).convert("L"))])
    ours = encode_png(px, "RGBA")
    buf = io.BytesIO()
    Image.fromarray(px, "RGBA").save(buf, "PNG", compress_level=1)
    np.testing.assert_array_equal(np.asarray(decode(ours)), px)
    assert len(ours) < 0.8 * px.nbytes
    assert len(ours) <= 1.2 * buf.tell()  # a few percent larger than Pillow's adaptive filters, never much
