"""The model-family registry: the one record per family that build, export and the CLI read."""

from __future__ import annotations

import pytest

from rmbg_backend.families import (
    FAMILIES,
    SYNTHETIC_LICENCE,
    UNKNOWN_LICENCE,
    ModelSpec,
    all_variants,
    family,
    family_of_variant,
    licence_of,
)


def test_specs_follow_each_family_recipe():
    isnet, birefnet = family("isnet").spec(), family("birefnet").spec(512)
    assert (isnet.height, isnet.width, isnet.mean, isnet.std) == (1024, 1024, (0.5,) * 3, (1.0,) * 3)
    assert isnet.mask_normalization == "minmax"
    assert (birefnet.height, birefnet.mask_normalization) == (512, "none")
    assert birefnet.mean == (0.485, 0.456, 0.406) and birefnet.std == (0.229, 0.224, 0.225)
    assert family("birefnet").spec(height=256, width=384).width == 384


@pytest.mark.parametrize("name", list(FAMILIES))
def test_sizes_off_the_multiple_are_refused_with_the_multiple_named(name):
    multiple = family(name).size_multiple
    with pytest.raises(ValueError, match=f"divisible by {multiple}"):
        family(name).spec(multiple * 10 + 1)


def test_every_variant_has_one_family_and_the_default_is_a_variant():
    variants = all_variants()
    assert len(variants) == len(set(variants))
    for fam in FAMILIES.values():
        assert fam.default_variant in fam.variants
        for v in fam.all_variants():
            assert family_of_variant(v) is fam
    with pytest.raises(ValueError, match="unknown model variant 'nope'"):
        family_of_variant("nope")
    with pytest.raises(ValueError, match="known: isnet, birefnet"):
        family("nope")


def test_licences_are_read_from_the_records():
    assert "AGPL-3.0" in licence_of("imgly-isnet")
    assert "non-commercial" in licence_of("hf:briaai/RMBG-1.4")
    assert "CC BY-NC 4.0" in licence_of("hf:briaai/RMBG-2.0")
    assert licence_of("hf:ZhengPeng7/BiRefNet").startswith("MIT")
    assert licence_of("synthetic") == SYNTHETIC_LICENCE and licence_of("/tmp/x.onnx") == UNKNOWN_LICENCE


def test_spec_round_trips_through_its_config_json():
    import json
    from dataclasses import asdict

    spec = family("birefnet").spec(256)
    assert ModelSpec.from_dict(json.loads(json.dumps(asdict(spec)))) == spec
    with pytest.raises(ValueError, match="mask_normalization"):
        ModelSpec("x", mask_normalization="sigmoid")
