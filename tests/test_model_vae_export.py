"""The first-frame VAE encoder equals diffusers' encode, and the two export boundaries export."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLWan

from dit4dit_policy.model import ActionDenoiser, VideoTrunk, build_model, load_preset
from dit4dit_policy.model.first_frame import encode_first_frame

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("base_dim", [4, 8])
@torch.no_grad()
def test_when_first_frame_encoded_in_2d_expect_diffusers_first_latent(base_dim):
    cfg = load_preset("tiny")
    torch.manual_seed(base_dim)
    vae = AutoencoderKLWan(**{**cfg.vae_kwargs(), "base_dim": base_dim}).eval()
    s = cfg.observation.image_size
    g = torch.Generator().manual_seed(0)
    clip = torch.rand(2, 3, 5, s, s, generator=g) * 2 - 1
    first = encode_first_frame(vae, clip[:, :, :1])
    assert first.shape == (2, cfg.vae.z_dim, 1, s // 8, s // 8)
    torch.testing.assert_close(first, vae.encode(clip[:, :, :1]).latent_dist.mode(), rtol=0, atol=1e-5)
    torch.testing.assert_close(first, vae.encode(clip).latent_dist.mode()[:, :, :1], rtol=0, atol=1e-5)
    other = encode_first_frame(vae, clip[:, :, 1:2])
    assert (other - first).abs().max() > 1e-2  # it does depend on the frame


def test_when_given_more_than_one_frame_expect_error():
    vae = AutoencoderKLWan(**load_preset("tiny").vae_kwargs())
    with pytest.raises(ValueError, match=r"expected one frame as \[B, 3, 1, H, W\]"):
        encode_first_frame(vae, torch.zeros(1, 3, 2, 64, 64))


def test_when_exported_expect_trunk_and_denoiser_reproduce_eager_outputs():
    cfg = load_preset("tiny")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    c, t, h, w = cfg.latent_shape
    g = torch.Generator().manual_seed(1)
    cond, future = torch.randn(1, c, 1, h, w, generator=g), torch.randn(1, c, t - 1, h, w, generator=g)
    context = torch.randn(1, cfg.text.max_tokens, cfg.video.text_embed_dim, generator=g)
    trunk = VideoTrunk(model.video)
    with torch.no_grad():
        tokens = trunk(cond, future, context)
        exported = torch.export.export(trunk, (cond, future, context)).module()
        torch.testing.assert_close(exported(cond, future, context), tokens, rtol=0, atol=1e-6)
        keys, values = model.action.project_kv(tokens)
        state_token = model.action.encode_state(torch.randn(1, cfg.state.dim, generator=g))
        args = (
            torch.randn(1, cfg.action.horizon, cfg.action.dim, generator=g),
            torch.tensor([0.75]),
            state_token,
            keys,
            values,
        )
        denoiser = ActionDenoiser(model.action)
        exported = torch.export.export(denoiser, args).module()
        torch.testing.assert_close(exported(*args), denoiser(*args), rtol=0, atol=1e-6)
