"""Every hostile case through the pure pre/post steps: success, or a RequestError naming the input."""

from __future__ import annotations

import numpy as np
import pytest

from rmbg_backend import steps
from rmbg_backend.errors import RequestError
from rmbg_backend.families import family
from tests.hostile.corpus import CASES, KINDS

SPEC = family("isnet").spec(64)  # small model input: the model itself is not under test here


def test_corpus_covers_every_class():
    """At least 100 distinct cases; each class of issue 10 present with its minimum count; every
    expected error names the input it blames, and every input is distinct within its class."""
    assert len(CASES) >= 100
    assert len({c.name for c in CASES}) == len(CASES)
    counts = {kind: sum(c.kind == kind for c in CASES) for kind in KINDS}
    short = {kind: (counts[kind], least) for kind, least in KINDS.items() if counts[kind] < least}
    assert not short, short
    assert {c.kind for c in CASES} <= set(KINDS)
    names = {"IMAGE", "BACKGROUND", "OPTIONS", "outputFormat", "outputQuality", "rgba", "alphaMatting",
             "alphaMattingForegroundThreshold", "alphaMattingBackgroundThreshold", "alphaMattingErodeSize",
             "returnOnlyMask", "bgColor", "x"}
    for c in CASES:
        if c.expect != "ok" and ":" in c.expect:
            assert c.expect.split(":")[0] in names, c
    for kind in KINDS:
        inputs = [(c.image, c.options, c.background) for c in CASES if c.kind == kind]
        assert len(set(inputs)) == len(inputs), f"{kind}: two cases send the same request"
    for bomb in ("ico", "icns", "tiff", "mpo", "gif", "webp", "apng"):
        assert any(c.name.startswith(bomb) and c.kind == "container-bomb" for c in CASES), bomb
    aspect = [c for c in CASES if c.kind == "background" and c.expect == "ok"]
    assert any("30000x1" in c.name for c in aspect) and any("1x30000" in c.name for c in aspect)


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
