"""highQuality's pure steps: the second pass's box, the fusion, the decision and its anti-aliasing.

The engine here is a stand-in with a known answer (foreground = bright pixels), so the plumbing
is checked exactly: which pixels the second pass sees, what comes back where. The real weights'
gain is measured served, in tests/integration/test_high_quality_served.py.
"""

import numpy as np
import pytest

from rmbg_backend import steps
from rmbg_backend.families import family
from rmbg_backend.high_quality import (
    DECISION_RANGE,
    anti_aliased_decision,
    decision_threshold,
    fuse_crop,
    high_quality_alpha,
    second_pass_box,
)
from rmbg_backend.mask import mask_to_probability
from rmbg_backend.resize import to_model_input, to_model_pixels
from rmbg_backend.shape import Box

SPEC = family("isnet").spec(64)  # a small model input keeps the engine stand-in fast


class BrightEngine:
    """Foreground is where the input is bright: a soft step of the mean channel value at mid-grey.

    Takes the engine's input as served (IS-Net's ``x/255 - 0.5``, or uint8 pixels for gpu-torch)
    and records every batch it was given.
    """

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        x = batch.astype(np.float32) / 255.0 if batch.dtype == np.uint8 else batch + 0.5
        return 1.0 / (1.0 + np.exp(-20.0 * (x.mean(axis=1, keepdims=True) - 0.5)))


def photo(h: int = 300, w: int = 400, box: tuple[int, int, int, int] = (150, 100, 250, 160)) -> np.ndarray:
    """Black, with a white rectangle (x0, y0, x1, y1) as the subject."""
    rgb = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    rgb[y0:y1, x0:x1] = 255
    return rgb


def test_second_pass_box_is_the_subject_box_grown_by_the_margin():
    prob = np.zeros((200, 300), np.float32)
    prob[80:120, 100:160] = 0.9
    prob[79, 100:160] = 0.1  # below the subject threshold (32/255): not part of the box
    assert second_pass_box(prob) == Box(88, 72, 172, 128)  # 20% of 60 x 40
    assert second_pass_box(prob, "0%") == Box(100, 80, 160, 120)
    assert second_pass_box(np.zeros((200, 300), np.float32)) is None  # no subject
    prob[5:195, 10:290] = 0.9  # grown by 20% it covers the photo: the first pass saw exactly that
    assert second_pass_box(prob) is None


def test_decision_threshold_separates_the_two_modes():
    rng = np.random.default_rng(0)
    background = np.clip(rng.normal(0.05, 0.03, 50_000), 0, 1)
    subject = np.clip(rng.normal(0.65, 0.03, 50_000), 0, 1)
    t = decision_threshold(np.concatenate([background, subject]).astype(np.float32).reshape(200, 500))
    assert 0.3 < t < 0.4  # between the modes, not at 0.5 where a low-confidence subject would be lost
    confident = np.concatenate([background, 1 - background]).astype(np.float32).reshape(200, 500)
    assert abs(decision_threshold(confident) - 0.5) < 0.05
    assert decision_threshold(np.full((10, 10), 0.3, np.float32)) == 0.5  # one level: nothing to separate


def test_decision_threshold_stays_in_its_range_for_a_faint_haze():
    """Background at 0 and a haze at 0.06: Otsu alone would split them and make the haze solid."""
    prob = np.zeros((100, 100), np.float32)
    prob[:, 50:] = 0.06
    assert decision_threshold(prob) == DECISION_RANGE[0]
    prob[:, 50:] = 0.97
    prob[:, :50] = 1.0
    assert decision_threshold(prob) == DECISION_RANGE[1]


def test_anti_aliased_decision_draws_the_contour_over_one_pixel():
    x = np.arange(200, dtype=np.float32)
    ramp = np.clip((x - 80.0) / 40.0, 0, 1)  # a 40-pixel soft edge, p = 0.5 at x = 100
    prob = np.tile(ramp, (16, 1))
    alpha = anti_aliased_decision(prob.copy(), 0.5)
    assert alpha.dtype == np.uint8
    assert (alpha[:, :100] == 0).all() and (alpha[:, 100] == 128).all() and (alpha[:, 101:] == 255).all()
    # a contour a quarter pixel further right: the edge pixel is a quarter covered
    alpha = anti_aliased_decision(prob.copy(), 0.5 + 0.25 / 40.0)
    assert (alpha[:, 100] == 64).all() and (alpha[:, 101:] == 255).all() and (alpha[:, :100] == 0).all()


def test_anti_aliased_decision_settles_plateaus_by_their_side_of_the_threshold():
    prob = np.full((20, 20), 0.45, np.float32)
    prob[:, 10:] = 0.55
    alpha = anti_aliased_decision(prob, 0.5)
    assert (alpha[:, :9] == 0).all() and (alpha[:, 11:] == 255).all()


def test_fuse_crop_averages_inside_the_box_only():
    prob = np.zeros((50, 60), np.float32)
    box = Box(10, 5, 40, 25)
    assert fuse_crop(prob, np.full((1, 64, 64), 0.8, np.float32), box, "none")  # a sigmoid output, used as is
    np.testing.assert_allclose(prob[5:25, 10:40], 0.4)
    prob[5:25, 10:40] = 0
    assert not prob.any()
    before = np.full((50, 60), 0.7, np.float32)
    assert not fuse_crop(before, np.full((1, 64, 64), 0.8, np.float32), box, "minmax")  # no contrast: ignored
    assert (before == 0.7).all()


def test_high_quality_alpha_runs_the_engine_once_on_the_subject_crop():
    rgb = photo()
    engine = BrightEngine()
    first = engine(to_model_input(rgb, SPEC)[np.newaxis])[0]
    alpha, ms = high_quality_alpha(first, rgb, SPEC, engine)
    assert len(engine.batches) == 2 and ms >= 0  # the first pass above, then one second pass
    # the subject (150, 100)-(250, 160) as the first pass saw it, grown by 20%
    box = second_pass_box(mask_to_probability(first, 300, 400, "minmax"))
    assert box.x0 <= 130 and box.y0 <= 88 and box.x1 >= 270 and box.y1 >= 172 and box.width < 400
    np.testing.assert_array_equal(engine.batches[1], to_model_input(rgb[box.y0:box.y1, box.x0:box.x1], SPEC)[None])
    assert alpha.shape == (300, 400) and alpha.dtype == np.uint8
    assert (alpha[105:155, 155:245] == 255).all() and (alpha[:80] == 0).all() and (alpha[:, :120] == 0).all()
    soft = (alpha > 0) & (alpha < 255)
    assert soft[102:158].sum(axis=1).max() <= 2  # across a side: one pixel of its edge at most
    assert soft.sum() <= 2 * (100 + 60) + 4  # a contour one pixel wide


def test_high_quality_alpha_sends_pixels_to_a_uint8_engine():
    rgb = photo()
    engine = BrightEngine()
    first = engine(to_model_pixels(rgb, SPEC)[np.newaxis])[0]
    high_quality_alpha(first, rgb, SPEC, engine, "uint8")
    box = second_pass_box(mask_to_probability(first, 300, 400, "minmax"))
    assert engine.batches[1].dtype == np.uint8
    np.testing.assert_array_equal(engine.batches[1], to_model_pixels(rgb[box.y0:box.y1, box.x0:box.x1], SPEC)[None])


def test_high_quality_alpha_skips_the_second_pass_when_it_would_see_nothing_new():
    engine = BrightEngine()
    empty = np.zeros((120, 160, 3), np.uint8)
    alpha, ms = high_quality_alpha(engine(to_model_input(empty, SPEC)[np.newaxis])[0], empty, SPEC, engine)
    assert not alpha.any() and ms == 0.0 and len(engine.batches) == 1  # no contrast: the default's empty mask
    full = photo(120, 160, (5, 5, 155, 115))  # grown by 20%, the box is the whole photo
    alpha, ms = high_quality_alpha(engine(to_model_input(full, SPEC)[np.newaxis])[0], full, SPEC, engine)
    assert ms == 0.0 and len(engine.batches) == 2
    assert (alpha[10:110, 10:150] == 255).all() and (alpha[:3] == 0).all()


def test_a_second_pass_of_the_wrong_shape_is_an_error():
    rgb = photo()
    engine = BrightEngine()
    first = engine(to_model_input(rgb, SPEC)[np.newaxis])[0]
    with pytest.raises(ValueError, match=r"shape \(1, 1, 32, 32\), expected \(1, 1, 64, 64\)"):
        high_quality_alpha(first, rgb, SPEC, lambda batch: np.zeros((1, 1, 32, 32), np.float32))


def test_postprocess_runs_high_quality_only_with_a_second_pass():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(photo()).save(buf, format="PNG")
    prepared = steps.preprocess(buf.getvalue(), b'{"highQuality": true, "returnOnlyMask": true}', SPEC)
    engine = BrightEngine()
    mask = engine(prepared.model_input[np.newaxis])[0]
    with pytest.raises(ValueError, match="highQuality needs a second engine pass"):
        steps.postprocess(mask, prepared.pixels, prepared.meta, SPEC)
    data, info = steps.postprocess(mask, prepared.pixels, prepared.meta, SPEC, second_pass=engine)
    assert set(info["timings"]) >= {"second_pass_ms", "postprocess_ms", "model_ms"}
    alpha = np.asarray(Image.open(io.BytesIO(data)))
    assert (alpha[105:155, 155:245] == 255).all() and (alpha[:80] == 0).all()
