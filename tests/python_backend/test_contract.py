"""Tensor names and the ensemble naming rule, owned by one module."""

from __future__ import annotations

from rmbg_backend import contract as c


def test_names_of_design_section_2():
    assert c.ENSEMBLE_INPUTS == ("IMAGE", "OPTIONS", "BACKGROUND")
    assert c.ENSEMBLE_OUTPUTS == ("IMAGE_OUT", "INFO")
    assert (c.ENGINE_INPUT, c.ENGINE_OUTPUT) == ("input", "mask")


def test_ensemble_naming_rule_round_trips():
    assert c.ensemble_name("isnet") == "rmbg_isnet"
    assert c.model_of_ensemble("rmbg_birefnet") == "birefnet"
    assert c.model_of_ensemble("preprocess_isnet") is None and c.model_of_ensemble("rmbg_") is None
    assert c.step_name("postprocess", "isnet") == "postprocess_isnet"


def test_every_target_offers_its_default_precision_first():
    assert set(c.TARGETS) >= {"cpu", "gpu-trt", "gpu-ort"}
    for target, precisions in c.TARGET_PRECISIONS.items():
        assert precisions and set(precisions) <= set(c.PRECISIONS), target
