"""The dual flow-matching objective with decoupled timesteps, for one batch.

- Video: noise the future latents at tau_v ~ U[0, 1] per sample (the conditioning latent stays
  clean), MSE of the predicted velocity on the future frames only.
- Extraction: a separate pass of the video DiT up to the extraction block at the fixed sigma, with
  no gradient: the action loss never updates the video DiT.
- Action: each sample's video features serve `action_noise_draws` independent (noise, tau_a)
  draws, tau_a = s / 0.999 with s ~ Beta(1.5, 1); masked MSE of the predicted velocity.
- Total: L = L_action + video_loss_weight * L_video.

Randomness: either one generator for the whole batch, or one seed per sample (`sample_seeds`), so
that each sample's draws (noise, timesteps, dropout masks) depend on the sample alone, not on
which batch or process it lands in: data-parallel training then computes what one process would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import partial

import torch
from torch import nn

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
    # Entries (noise draw x chunk step x action dim) the action loss averages over: a trainer that
    # splits a batch over processes rescales by local / global entries to get the batch's mean.
    action_entries: torch.Tensor


@dataclass(frozen=True)
class LossNoise:
    """Every random draw of one loss evaluation except dropout, in the order they are drawn."""

    tau_video: torch.Tensor  # [B] flow time of the video loss
    video: torch.Tensor  # [B, C, T_latent - 1, h, w] noise of the video loss
    extract: torch.Tensor  # [B, C, T_latent - 1, h, w] future latents of the extraction pass
    tau_action: torch.Tensor  # [B * draws] flow time of the action loss, draws of a sample adjacent
    action: torch.Tensor  # [B * draws, H, action.dim] noise of the action loss

    @classmethod
    def draw(
        cls,
        cfg: ModelConfig,
        batch: int,
        *,
        generator: torch.Generator | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> LossNoise:
        c, _, h, w = cfg.latent_shape
        latent = (batch, c, cfg.future_latent_frames, h, w)
        t, n = cfg.training, batch * cfg.training.action_noise_draws
        return cls(
            tau_video=torch.rand(batch, generator=generator, device=device),
            video=torch.randn(latent, generator=generator, device=device, dtype=dtype),
            extract=torch.randn(latent, generator=generator, device=device, dtype=dtype),
            tau_action=sample_action_tau(n, t.action_tau_alpha, t.action_tau_scale, generator=generator, device=device),
            action=torch.randn(
                (n, cfg.action.horizon, cfg.action.dim), generator=generator, device=device, dtype=dtype
            ),
        )

    @classmethod
    def per_sample(
        cls, cfg: ModelConfig, generators: Sequence[torch.Generator], *, device: torch.device, dtype: torch.dtype
    ) -> LossNoise:
        """Sample i's draws come from generators[i] alone."""
        parts = [cls.draw(cfg, 1, generator=g, device=device, dtype=dtype) for g in generators]
        return cls(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)})


def compute_loss(
    model: DiT4DiT,
    batch: TrainBatch,
    *,
    text_encoder: TextEncoder | None = None,
    generator: torch.Generator | None = None,
    sample_seeds: Sequence[int] | None = None,
) -> LossParts:
    """The training loss of one batch. `text_encoder` is needed when `batch.text` holds strings.

    Randomness, one of:
    - `generator` (on the model's device; torch's global RNG when None) drives the noise and
      timestep draws of the whole batch; dropout (the action DiT's, in train mode) draws from
      torch's global RNG, so seed that too (`torch.manual_seed`) for reproducible training;
    - `sample_seeds`, one int per sample: a generator per sample draws that sample's noise,
      timesteps and dropout masks, so the result is the same however samples are batched.
    """
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
    b = batch.frames.shape[0]

    if sample_seeds is None:
        noise = LossNoise.draw(cfg, b, generator=generator, device=device, dtype=dtype)
        return _loss(model, batch, text, noise)
    if generator is not None:
        raise ValueError("pass either generator or sample_seeds, not both")
    seeds = list(sample_seeds)
    if len(seeds) != b:
        raise ValueError(f"sample_seeds must hold one seed per sample ({b}), got {len(seeds)}")
    generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    noise = LossNoise.per_sample(cfg, generators, device=device, dtype=dtype)
    with per_sample_dropout(model, generators):
        return _loss(model, batch, text, noise)


def _loss(model: DiT4DiT, batch: TrainBatch, text: torch.Tensor, noise: LossNoise) -> LossParts:
    cfg = model.cfg
    dtype = model.video.latents_mean.dtype
    latents = model.video.encode(batch.frames.to(dtype).transpose(1, 2))  # VAE frozen, no grad
    cond, x0 = latents[:, :, :1], latents[:, :, 1:]

    # Video flow matching on the future latents.
    noisy = torch.cat([cond, interpolate(x0, noise.video, noise.tau_video)], dim=2)
    pred_v = model.video.velocity(noisy, noise.tau_video, text)
    target_v = torch.cat([torch.zeros_like(cond), velocity_target(x0, noise.video)], dim=2)
    loss_video = video_flow_loss(pred_v, target_v)

    # Features at the fixed extraction sigma: a separate pass, no gradient into the video DiT.
    with torch.no_grad():
        future = interpolate(x0, noise.extract, cfg.video.extract_sigma)
        tokens = model.features(cond, future, model.video.project_text(text))

    # Action flow matching: `draws` (noise, tau) pairs per sample share its features, and so its
    # cross-attention keys/values.
    draws = cfg.training.action_noise_draws
    keys, values = model.action.project_kv(tokens)
    keys, values = keys.repeat_interleave(draws, dim=1), values.repeat_interleave(draws, dim=1)
    state_token = model.action.encode_state(batch.state.to(dtype)).repeat_interleave(draws, dim=0)
    x0_a = batch.actions.to(dtype).repeat_interleave(draws, dim=0)
    mask = batch.action_mask.repeat_interleave(draws, dim=0)
    tau_a, noise_a = noise.tau_action, noise.action
    pred_a = model.action.denoise(interpolate(x0_a, noise_a, tau_a), tau_a, state_token, keys, values)
    loss_action = action_flow_loss(pred_a, velocity_target(x0_a, noise_a), mask)

    total = loss_action + cfg.training.video_loss_weight * loss_video
    return LossParts(total=total, action=loss_action, video=loss_video, action_entries=mask.sum())


@contextmanager
def per_sample_dropout(model: nn.Module, generators: Sequence[torch.Generator]) -> Iterator[None]:
    """Within the block, every active dropout layer of `model` draws the mask rows of sample i from
    generators[i] (the rows of a sample are adjacent: its action noise draws). The layers are put
    in eval mode (no draw from the global RNG) and a forward hook applies the per-sample mask.
    Not for layers under activation checkpointing: a recomputed forward would draw new masks (the
    only dropout with p > 0 is the action DiT's, which is not checkpointed)."""
    active = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.training and m.p > 0]
    handles = []
    try:
        for m in active:
            m.train(False)
            handles.append(m.register_forward_hook(partial(_sample_dropout, generators=generators)))
        yield
    finally:
        for h in handles:
            h.remove()
        for m in active:
            m.train(True)


def _sample_dropout(module: nn.Dropout, args: tuple, _output: torch.Tensor, generators) -> torch.Tensor:
    x = args[0]
    if x.shape[0] % len(generators):
        raise RuntimeError(f"dropout input of {x.shape[0]} rows cannot be split over {len(generators)} samples")
    rows = x.shape[0] // len(generators)
    keep = torch.cat([torch.rand((rows, *x.shape[1:]), generator=g, device=x.device) >= module.p for g in generators])
    return x * keep.to(x.dtype) / (1 - module.p)
