"""Every hostile case through the pure pre/post steps: success, or a RequestError naming the input."""

from __future__ import annotations

import numpy as np
import pytest

from rmbg_backend import steps
from rmbg_backend.errors import RequestError
from rmbg_backend.families import family
from tests.hostile.corpus import CASES

SPEC = family("isnet").spec(64)  # small model input: the model itself is not under test here


def test_corpus_is_large_enough():
    assert len(CASES) >= 50
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case):
    try:
        prepared = steps.preprocess(case.image, case.options, SPEC)
        mask = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(1, 64, 64)
        data, info = steps.postprocess(mask, prepared.pixels, prepared.meta, SPEC, case.background)
    except RequestError as exc:
        assert case.expect != "ok", f"{case.name}: unexpected error {exc}"
        assert case.expect in str(exc), f"{case.name}: {exc}"
        return
    assert case.expect == "ok", f"{case.name}: expected an error containing {case.expect!r}"
    assert data and info["width"] >= 1 and info["height"] >= 1
