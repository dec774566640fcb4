"""The analytic FLOP counts against torch's counter on the real modules, and the g1 anchors."""

from __future__ import annotations

import pytest
import torch

from dit4dit_policy.model import build_model, flop_report, load_preset
from dit4dit_policy.model import flops as F


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_when_modules_counted_by_torch_expect_analytic_counts_exactly(name):
    cfg = load_preset(name)
    model = build_model(cfg, device="meta")
    c, t, h, w = cfg.latent_shape
    with torch.device("meta"):
        latents, sigma = torch.empty(1, c, t, h, w), torch.empty(1)
        text = torch.empty(1, cfg.text.max_tokens, cfg.text.out_dim)
        context = torch.empty(1, cfg.text.max_tokens, cfg.video.text_embed_dim)
        tokens = torch.empty(1, cfg.num_video_tokens, cfg.video.width)
        state, actions = torch.empty(1, cfg.state.dim), torch.empty(1, cfg.action.horizon, cfg.action.dim)
        keys, values = model.action.project_kv(tokens)
        state_token = model.action.encode_state(state)
    assert F.measure_flops(lambda: model.video.velocity(latents, sigma, text)) == F.video_full_flops(cfg)
    trunk = F.measure_flops(lambda: model.features(latents[:, :, :1], latents[:, :, 1:], context))
    assert trunk == F.video_trunk_flops(cfg)
    assert F.measure_flops(lambda: model.video.project_text(text)) == F.text_projection_flops(cfg)
    assert F.measure_flops(lambda: model.action.project_kv(tokens)) == F.action_kv_flops(cfg)
    assert F.measure_flops(lambda: model.action.encode_state(state)) == F.action_state_flops(cfg)
    step = F.measure_flops(lambda: model.action.denoise(actions, sigma, state_token, keys, values))
    assert step == F.action_step_flops(cfg)


def test_when_g1_reported_expect_the_known_anchors():
    parts = flop_report(load_preset("g1")).parts
    # ~2.1 TFLOP for 28 blocks over 588 tokens, plus the 100352 -> 1024 text projection.
    assert 2.3e12 < parts["video_dit_all_28_blocks"] < 2.6e12
    assert parts["text_projection"] == 2 * 512 * 100352 * 1024
    # Stopping after block 17 keeps 18 of 28 blocks.
    assert 0.5 < parts["video_trunk_blocks_0_17"] / parts["video_dit_all_28_blocks"] < 0.6
    # The action DiT's keys/values over the video tokens: ~30 GFLOP, the bulk of a naive step.
    assert parts["action_kv_projection"] == 8 * 2 * 2 * 588 * 2048 * 768
    assert parts["action_denoise_step"] < parts["action_kv_projection"] / 5
    # The causal VAE on one frame instead of nine, and that frame as a 2D network.
    assert parts["vae_encode_current_frame"] < parts["vae_encode_9_frames"] / 5
    assert parts["vae_encode_current_frame_2d"] < parts["vae_encode_current_frame"] / 2.5
    assert parts["chunk_fast"] < parts["chunk_reference"] / 2.5
