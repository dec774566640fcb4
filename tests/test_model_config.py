"""Presets: loading, validation, derived dimensions, and every preset's shapes on the meta device."""

from __future__ import annotations

import copy

import pytest
import torch

from dit4dit_policy.config import load_yaml
from dit4dit_policy.model import ModelConfig, build_model, known_presets, load_preset
from dit4dit_policy.model.text import build_text_encoder


def test_when_presets_listed_expect_tiny_small_g1():
    assert {"tiny", "small", "g1"} <= set(known_presets())


def test_when_preset_unknown_expect_error_listing_known_ones():
    with pytest.raises(ValueError, match="unknown model preset 'g2'") as err:
        load_preset("g2")
    for name in ("g1", "small", "tiny"):
        assert name in str(err.value)


def test_when_g1_loaded_expect_paper_dimensions():
    cfg = load_preset("g1")
    assert cfg.video.width == 2048 and cfg.video.num_layers == 28 and cfg.video.extract_block == 17
    assert cfg.latent_shape == (16, 3, 28, 28)
    assert cfg.num_video_tokens == 588
    assert cfg.video.extract_sigma == pytest.approx(200 / 201)
    assert (cfg.action.real_dim, cfg.action.dim, cfg.action.horizon) == (16, 32, 16)
    assert (cfg.state.joints, cfg.state.dim) == (16, 64)
    assert cfg.text.out_dim == 100352 and cfg.video.text_embed_dim == 1024
    kw = cfg.transformer_kwargs()
    assert kw["in_channels"] == 18 and kw["concat_padding_mask"] is False


def test_when_config_round_trips_through_dict_expect_equal():
    cfg = load_preset("small")
    assert ModelConfig.from_dict(copy.deepcopy(cfg.to_dict())) == cfg


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        ("video", "extract_block", 8, "extract_block 8 is not a block index"),
        ("observation", "num_frames", 6, "multiple of the VAE's temporal factor"),
        ("observation", "image_size", 100, "image_size 100 must be a multiple of 16"),
        ("action", "dim", 4, "smaller than action.real_dim"),
        ("state", "dim", 10, "cannot hold sin and cos of 16 joints"),
        ("text", "kind", "bert", "text.kind 'bert' is unknown"),
        ("action_dit", "num_heads", 5, "not divisible by num_heads"),
    ],
)
def test_when_preset_field_invalid_expect_error_naming_it(section, field, value, message):
    data = load_yaml("model_small.yaml")
    data[section][field] = value
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(data)


def test_when_preset_has_unknown_or_missing_field_expect_both_named():
    data = load_yaml("model_small.yaml")
    data["video"]["extract_layer"] = 3
    del data["video"]["extract_block"]
    with pytest.raises(ValueError, match=r"video: fields missing \['extract_block'\], unknown \['extract_layer'\]"):
        ModelConfig.from_dict(data)


def test_when_text_encoder_config_built_expect_unset_fields_left_out():
    text = load_preset("tiny").text
    assert text.encoder_config() == {"kind": "hash", "out_dim": 48, "max_tokens": 8, "cache_entries": 64}
    assert load_preset("g1").text.encoder_config(path="/models/reason")["path"] == "/models/reason"


def test_when_text_encoder_built_from_preset_expect_its_memory_cache_size():
    # 8 Reason1 entries of 205 MB each, not the encoder's default 256 (52 GB).
    assert load_preset("g1").text.encoder_config(path="/models/reason")["cache_entries"] == 8
    text = load_preset("tiny").text
    assert build_text_encoder(text.encoder_config()).max_entries == text.cache_entries


@pytest.mark.parametrize("value", [0, 2.5, True, None])
def test_when_text_cache_entries_not_a_positive_int_expect_refusal(value):
    data = load_yaml("model_tiny.yaml")
    data["text"]["cache_entries"] = value
    with pytest.raises(ValueError, match=f"text.cache_entries must be an int >= 1, got {value!r}"):
        ModelConfig.from_dict(data)


def _meta_inputs(cfg: ModelConfig, batch: int = 2) -> dict[str, torch.Tensor]:
    c, t, h, w = cfg.latent_shape
    with torch.device("meta"):
        return {
            "latents": torch.empty(batch, c, t, h, w),
            "sigma": torch.empty(batch),
            "text": torch.empty(batch, cfg.text.max_tokens, cfg.text.out_dim),
            "context": torch.empty(batch, cfg.text.max_tokens, cfg.video.text_embed_dim),
            "state": torch.empty(batch, cfg.state.dim),
            "actions": torch.empty(batch, cfg.action.horizon, cfg.action.dim),
            "video": torch.empty(
                batch, 3, cfg.observation.num_frames, cfg.observation.image_size, cfg.observation.image_size
            ),
        }


@pytest.mark.parametrize("name", ["tiny", "small", "g1"])
def test_when_preset_built_on_meta_expect_every_part_has_the_derived_shape(name):
    cfg = load_preset(name)
    model = build_model(cfg, device="meta")
    x = _meta_inputs(cfg)
    c, t, h, w = cfg.latent_shape
    assert model.video.encode(x["video"]).shape == (2, c, t, h, w)
    assert model.video.encode(x["video"][:, :, :1]).shape == (2, c, 1, h, w)
    assert model.video.velocity(x["latents"], x["sigma"], x["text"]).shape == (2, c, t, h, w)
    tokens = model.features(x["latents"][:, :, :1], x["latents"][:, :, 1:], x["context"])
    assert tokens.shape == (2, cfg.num_video_tokens, cfg.video.width)
    assert tokens.dtype == torch.float32
    keys, values = model.action.project_kv(tokens)
    n_cross = (cfg.action_dit.num_layers + 1) // 2
    head_dim = cfg.action_dit.width // cfg.action_dit.num_heads
    assert keys.shape == values.shape == (n_cross, 2, cfg.action_dit.num_heads, cfg.num_video_tokens, head_dim)
    v = model.action(x["actions"], x["sigma"], x["state"], tokens)
    assert v.shape == (2, cfg.action.horizon, cfg.action.dim) and v.dtype == torch.float32


def test_when_g1_built_on_meta_expect_2b_video_dit_and_dit_b_action_head():
    counts = build_model(load_preset("g1"), device="meta").param_counts()
    assert 1.9e9 < counts["video_dit"] < 2.2e9  # Cosmos-Predict2.5-2B
    assert 1.2e8 < counts["vae"] < 1.35e8  # Wan 2.1 VAE, ~127M
    assert 1.3e8 < counts["action_dit"] < 1.8e8  # DiT-B (16 x 768) with its encoders


def test_when_small_built_expect_tens_of_millions_of_parameters():
    counts = build_model(load_preset("small"), device="meta").param_counts()
    assert 2e7 < sum(counts.values()) < 1e8
