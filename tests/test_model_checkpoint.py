"""Checkpoint folders: bit-exact round trip, no silent overwrite, and refusals that name the mismatch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from dit4dit_policy.model import (
    ChunkNoise,
    FastInference,
    ReferenceInference,
    build_model,
    load_checkpoint,
    load_preset,
    save_checkpoint,
)
from dit4dit_policy.model.checkpoint import CONFIG, NORM_STATS, WEIGHTS
from dit4dit_policy.model.text import HashTextEncoder, build_text_encoder
from dit4dit_policy.preprocessing import NormStats


@pytest.fixture(scope="module")
def tiny():
    cfg = load_preset("tiny")
    torch.manual_seed(1)
    stats = NormStats(
        action_min=np.full(cfg.action.real_dim, -0.5), action_max=np.linspace(0.5, 2.0, cfg.action.real_dim)
    )
    return cfg, build_model(cfg), stats


@pytest.fixture
def saved(tiny, tmp_path):
    _, model, stats = tiny
    return save_checkpoint(model, stats, tmp_path / "ckpt")


def actions(model, stats, cfg):
    fast = FastInference(model, stats, HashTextEncoder(cfg.text.out_dim, cfg.text.max_tokens))
    g = torch.Generator().manual_seed(0)
    frame = torch.rand(3, cfg.observation.image_size, cfg.observation.image_size, generator=g) * 2 - 1
    joints = torch.rand(cfg.state.joints, generator=g).numpy()
    noise = ChunkNoise.draw(cfg, 1, generator=g)
    return fast.infer(frame, joints, "stack the cups", noise=noise)


def test_when_saved_and_loaded_expect_the_same_actions_bit_for_bit(tiny, saved):
    cfg, model, stats = tiny
    assert sorted(p.name for p in saved.iterdir()) == sorted([WEIGHTS, CONFIG, NORM_STATS])
    loaded, loaded_stats = load_checkpoint(saved, preset="tiny")
    assert loaded.cfg == cfg
    assert np.array_equal(loaded_stats.action_max, stats.action_max)
    assert np.array_equal(actions(loaded, loaded_stats, cfg), actions(model, stats, cfg))
    assert not loaded.training
    assert loaded.text_encoder_name is None  # none was recorded, so any fitting encoder is accepted


def test_when_folder_exists_expect_refusal_unless_overwrite(tiny, saved):
    _, model, stats = tiny
    before = (saved / WEIGHTS).stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        save_checkpoint(model, stats, saved)
    assert (saved / WEIGHTS).stat().st_mtime_ns == before
    save_checkpoint(model, stats, saved, overwrite=True)
    assert sorted(p.name for p in saved.iterdir()) == sorted([WEIGHTS, CONFIG, NORM_STATS])
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_when_checkpoint_is_from_another_preset_expect_refusal_naming_both(saved):
    with pytest.raises(ValueError, match="made with preset 'tiny', not the requested 'small'"):
        load_checkpoint(saved, preset="small")


def test_when_weights_do_not_fit_config_expect_every_problem_listed(saved):
    weights = load_file(saved / WEIGHTS)
    weights.pop("action.pos_embed")
    weights["action.extra_head.weight"] = torch.zeros(2, 2)
    weights["action.decoder.2.weight"] = torch.zeros(3, 3)
    save_file(weights, saved / WEIGHTS)
    with pytest.raises(ValueError) as err:
        load_checkpoint(saved)
    message = str(err.value)
    assert "1 missing: action.pos_embed" in message
    assert "1 unexpected: action.extra_head.weight" in message
    assert "1 shape-mismatched: action.decoder.2.weight: checkpoint [3, 3] vs model [8, 128]" in message


def test_when_config_claims_another_preset_expect_shape_errors_not_silent_load(saved):
    (saved / CONFIG).write_text(yaml.safe_dump(load_preset("small").to_dict(), sort_keys=False))
    (saved / NORM_STATS).write_text(json.dumps({"action_min": [0.0] * 16, "action_max": [1.0] * 16}))
    with pytest.raises(ValueError, match=r"preset 'small'.*does not fit the model: .*shape-mismatched"):
        load_checkpoint(saved)


def test_when_a_file_is_missing_expect_it_named(saved):
    (saved / NORM_STATS).unlink()
    with pytest.raises(FileNotFoundError, match=f"missing {NORM_STATS}"):
        load_checkpoint(saved)


def test_when_stats_do_not_cover_the_action_dims_expect_refusal(tiny, tmp_path):
    _, model, _ = tiny
    with pytest.raises(ValueError, match="norm_stats cover 3 action dims but preset 'tiny' has 7"):
        save_checkpoint(model, NormStats(np.zeros(3), np.ones(3)), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_when_text_encoder_recorded_expect_another_refused_naming_both(tiny, tmp_path):
    cfg, model, stats = tiny
    used = HashTextEncoder(cfg.text.out_dim, cfg.text.max_tokens, seed=0)
    other = HashTextEncoder(cfg.text.out_dim, cfg.text.max_tokens, seed=1)
    folder = save_checkpoint(model, stats, tmp_path / "ckpt", text_encoder_name=used.name)
    loaded, loaded_stats = load_checkpoint(folder)
    assert loaded.text_encoder_name == used.name
    FastInference(loaded, loaded_stats, build_text_encoder(cfg.text.encoder_config()))  # same name, cached
    for path in (FastInference, ReferenceInference):
        with pytest.raises(ValueError, match=r"trained with text encoder .*seed=0\)', but this one is .*seed=1\)'"):
            path(loaded, loaded_stats, other)
    resaved = save_checkpoint(loaded, loaded_stats, tmp_path / "again")  # the recorded name is kept
    assert load_checkpoint(resaved)[0].text_encoder_name == used.name


@pytest.mark.parametrize("name", ["", 3])
def test_when_text_encoder_name_is_not_a_name_expect_refusal(tiny, tmp_path, name):
    _, model, stats = tiny
    with pytest.raises(ValueError, match=f"text_encoder_name must be a non-empty string.*got {name!r}"):
        save_checkpoint(model, stats, tmp_path / "bad", text_encoder_name=name)
    assert not (tmp_path / "bad").exists()
