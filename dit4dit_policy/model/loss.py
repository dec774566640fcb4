"""The dual flow-matching objective with decoupled timesteps, for one batch.

- Video: noise the future latents at tau_v ~ U[0, 1] per sample (the conditioning latent stays
  clean), MSE of the predicted velocity on the future frames only.
- Extraction: a separate pass of the video DiT up to the extraction block at the fixed sigma, with
  no gradient: the action loss never updates the video DiT.
- Action: each sample's video features serve `action_noise_draws` independent (noise, tau_a)
  draws, tau_a = s / 0.999 with s ~ Beta(1.5, 1); masked MSE of the predicted velocity.
- Total: L = L_action + video_loss_weight * L_video.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dit4dit_policy.model.config import ModelConfig
from dit4dit_policy.model.dit4dit import DiT4DiT
from dit4dit_policy.model.flow import (
    action_flow_loss,
    interpolate,
    sample_action_tau,
    velocity_target,
    video_flow_loss,
)
from dit4dit_policy.model.text import TextEncoder


@dataclass(frozen=True)
class TrainBatch:
    frames: torch.Tensor  # [B, T, 3, S, S] in [-1, 1]; frame 0 is the current frame
    state: torch.Tensor  # [B, state.dim] sin/cos features (preprocessing.state_features)
    actions: torch.Tensor  # [B, H, action.dim] normalised to [-1, 1], zero-padded
    action_mask: torch.Tensor  # [B, H, action.dim], 1 where the action entry is real
    text: torch.Tensor | Sequence[str]  # raw embeddings [B, L, text.out_dim], or the instructions

    def check(self, cfg: ModelConfig) -> None:
        """Raise ValueError naming the first field whose shape does not fit the preset."""
        o, b = cfg.observation, self.frames.shape[0] if self.frames.ndim else 0
        s = o.image_size
        expected = {
            "frames": (b, o.num_frames, 3, s, s),
            "state": (b, cfg.state.dim),
            "actions": (b, cfg.action.horizon, cfg.action.dim),
            "action_mask": (b, cfg.action.horizon, cfg.action.dim),
        }
        if isinstance(self.text, torch.Tensor):
            expected["text"] = (b, cfg.text.max_tokens, cfg.text.out_dim)
        elif isinstance(self.text, str) or len(self.text) != b:
            raise ValueError(f"batch.text must be {b} instruction strings or a tensor, got {self.text!r:.80}")
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"batch.{name} must have shape {list(shape)} for preset {cfg.name!r}, got {list(got)}")
        for name in ("frames", "state", "actions"):
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f"batch.{name} contains NaN or inf")


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor  # what to backpropagate
    action: torch.Tensor
    video: torch.Tensor


def compute_loss(
    model: DiT4DiT,
    batch: TrainBatch,
    *,
    text_encoder: TextEncoder | None = None,
    generator: torch.Generator | None = None,
) -> LossParts:
    """The training loss of one batch. `text_encoder` is needed when `batch.text` holds strings.
    `generator` (on the model's device) drives the noise and timestep draws; dropout (the action
    DiT's, in train mode) draws from torch's global RNG instead, so seed that too
    (`torch.manual_seed`) for reproducible training."""
    cfg = model.cfg
    batch.check(cfg)
    device, dtype = batch.frames.device, model.video.latents_mean.dtype
    if isinstance(batch.text, torch.Tensor):
        text = batch.text
    elif text_encoder is None:
        raise ValueError("batch.text holds instruction strings but no text_encoder was given")
    else:
        text = text_encoder.encode(list(batch.text))
    text = text.to(device=device, dtype=dtype)

    latents = model.video.encode(batch.frames.to(dtype).transpose(1, 2))  # VAE frozen, no grad
    cond, x0 = latents[:, :, :1], latents[:, :, 1:]
    b = latents.shape[0]

    def randn(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    # Video flow matching on the future latents.
    tau_v = torch.rand(b, generator=generator, device=device)
    noise_v = randn(tuple(x0.shape))
    noisy = torch.cat([cond, interpolate(x0, noise_v, tau_v)], dim=2)
    pred_v = model.video.velocity(noisy, tau_v, text)
    target_v = torch.cat([torch.zeros_like(cond), velocity_target(x0, noise_v)], dim=2)
    loss_video = video_flow_loss(pred_v, target_v)

    # Features at the fixed extraction sigma: a separate pass, no gradient into the video DiT.
    with torch.no_grad():
        future = interpolate(x0, randn(tuple(x0.shape)), cfg.video.extract_sigma)
        tokens = model.features(cond, future, model.video.project_text(text))

    # Action flow matching: `draws` (noise, tau) pairs per sample share its features, and so its
    # cross-attention keys/values.
    draws = cfg.training.action_noise_draws
    keys, values = model.action.project_kv(tokens)
    keys, values = keys.repeat_interleave(draws, dim=1), values.repeat_interleave(draws, dim=1)
    state_token = model.action.encode_state(batch.state.to(dtype)).repeat_interleave(draws, dim=0)
    x0_a = batch.actions.to(dtype).repeat_interleave(draws, dim=0)
    mask = batch.action_mask.repeat_interleave(draws, dim=0)
    t = cfg.training
    tau_a = sample_action_tau(b * draws, t.action_tau_alpha, t.action_tau_scale, generator=generator, device=device)
    noise_a = randn(tuple(x0_a.shape))
    pred_a = model.action.denoise(interpolate(x0_a, noise_a, tau_a), tau_a, state_token, keys, values)
    loss_action = action_flow_loss(pred_a, velocity_target(x0_a, noise_a), mask)

    return LossParts(total=loss_action + t.video_loss_weight * loss_video, action=loss_action, video=loss_video)
