"""Official checkpoint files into our definitions: prefixes stripped, strict load, clear errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from rmbg_models import create_model
from rmbg_models.checkpoint import CheckpointError, load_checkpoint, read_state_dict
from rmbg_models.reference import synthetic_state_dict


@pytest.fixture(scope="module")
def tiny():
    return create_model("birefnet-tiny")


def test_prefixed_pth_and_safetensors_load_exactly(tiny, tmp_path):
    state = synthetic_state_dict(tiny)
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "model.pth")
    save_file({f"_orig_mod.{k}": v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    for name in ("model.pth", "model.safetensors"):
        model = create_model("birefnet-tiny")
        load_checkpoint(model, read_state_dict(tmp_path / name))
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), (name, key)


def test_derived_buffers_may_be_absent(tiny):
    state = {k: v for k, v in synthetic_state_dict(tiny).items()
             if not k.endswith(("relative_position_index", "num_batches_tracked"))}
    load_checkpoint(create_model("birefnet-tiny"), state)


def test_missing_unexpected_and_misshaped_keys_are_listed(tiny):
    state = synthetic_state_dict(tiny)
    weight = "decoder.ipt_blk5.conv_out.weight"
    assert weight in state
    bad = dict(state)
    del bad[weight]
    bad["decoder.extra.weight"] = torch.zeros(1)
    first = next(iter(state))
    bad[first] = torch.zeros(1, 2, 3)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(create_model("birefnet-tiny"), bad)
    text = str(info.value)
    assert f"missing keys: {weight}" in text and "unexpected keys: decoder.extra.weight" in text
    assert f"{first}: checkpoint (1, 2, 3)" in text


def test_isnet_checkpoint_cannot_load_into_birefnet(tmp_path):
    torch.save(synthetic_state_dict(create_model("isnet-tiny")), tmp_path / "isnet.pth")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(create_model("birefnet-tiny"), read_state_dict(tmp_path / "isnet.pth"))
