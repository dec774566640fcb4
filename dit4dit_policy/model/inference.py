"""Action chunks from observations: the reference path and the fast path, same weights, same outputs.

Reference (what the DiT4DiT release does on every query): encode the instruction, VAE-encode all
`num_frames` frames (the current frame repeated, as the Cosmos pipeline pads a short clip), run
every video DiT block and capture the extraction block's output with a hook, then Euler-integrate
the action DiT, recomputing its cross-attention keys/values at every step.

Fast (what runs on the robot), exact up to float rounding:
1. the video DiT stops after the extraction block;
2. only the current frame goes through the VAE (causal: latent frame 0 depends on it alone),
   as the 2D network the causal encoder reduces to on a first frame (`first_frame.py`);
3. the text context (embedding + the DiT's projection) is computed once per instruction;
4. the action DiT's keys/values and the state token are computed once per chunk;
5. the denoising loop works in a preallocated buffer with static shapes, calling the tensor-only
   `ActionDenoiser`, so it can be captured in a CUDA graph or exported (as can `VideoTrunk`).

Both draw their randomness through `ChunkNoise` so that a test can hand both the same noise, and
both refuse to run while the model is in training mode: the action DiT's dropout would be active.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from dit4dit_policy.model.action_dit import ActionDenoiser
from dit4dit_policy.model.config import ModelConfig
from dit4dit_policy.model.dit4dit import DiT4DiT
from dit4dit_policy.model.sampler import euler_sample, tau_schedule
from dit4dit_policy.model.text import TextEncoder
from dit4dit_policy.model.video import VideoTrunk
from dit4dit_policy.preprocessing import ActionNormalizer, NormStats, state_features


@dataclass(frozen=True)
class ChunkNoise:
    """All the randomness of one query: the future latents of the extraction pass and the initial
    action chunk of the sampler."""

    video: torch.Tensor  # [B, C, T_latent - 1, h, w]
    action: torch.Tensor  # [B, H, action.dim]

    @classmethod
    def draw(
        cls,
        cfg: ModelConfig,
        batch: int = 1,
        *,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> ChunkNoise:
        c, _, h, w = cfg.latent_shape
        video = torch.randn((batch, c, cfg.future_latent_frames, h, w), generator=generator, device=device, dtype=dtype)
        action = torch.randn(
            (batch, cfg.action.horizon, cfg.action.dim), generator=generator, device=device, dtype=dtype
        )
        return cls(video=video, action=action)


class StageTimes:
    """Wall time per named stage, recorded only when `enabled` (the bench's per-stage breakdown).
    On CUDA each stage is synchronised so that its time is its own."""

    def __init__(self, enabled: bool = False):
        self.enabled = enabled
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str, device: torch.device) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        yield
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.seconds[name] += time.perf_counter() - start


class _Inference:
    def __init__(self, model: DiT4DiT, norm_stats: NormStats, text_encoder: TextEncoder):
        cfg = model.cfg
        if text_encoder.out_dim != cfg.text.out_dim or text_encoder.max_tokens != cfg.text.max_tokens:
            raise ValueError(
                f"text encoder gives [{text_encoder.max_tokens}, {text_encoder.out_dim}] per instruction; "
                f"preset {cfg.name!r} needs [{cfg.text.max_tokens}, {cfg.text.out_dim}]"
            )
        if norm_stats.dims != cfg.action.real_dim:
            raise ValueError(
                f"normalisation stats cover {norm_stats.dims} action dims; preset {cfg.name!r} has "
                f"{cfg.action.real_dim} real action dims"
            )
        trained_with = model.text_encoder_name
        if trained_with is not None and text_encoder.name != trained_with:
            raise ValueError(
                f"the checkpoint was trained with text encoder {trained_with!r}, but this one is "
                f"{text_encoder.name!r}; its embeddings would not mean what the weights learned"
            )
        self.model = model.eval()
        self.cfg = cfg
        self.normalizer = ActionNormalizer(norm_stats, cfg.action.dim)
        self.text_encoder = text_encoder
        self.times = StageTimes()

    @property
    def device(self) -> torch.device:
        return self.model.video.latents_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.video.latents_mean.dtype

    def infer(
        self,
        frame: torch.Tensor,
        joint_positions: np.ndarray,
        instruction: str,
        *,
        noise: ChunkNoise | None = None,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """One query. frame: [3, S, S] float RGB in [-1, 1] (`preprocessing.image_to_model`);
        joint_positions: [state.joints] radians; -> float32 [H, action.real_dim] in robot units.
        Fresh noise on every call unless `noise` is given (or drawn from `generator`)."""
        frames = check_frame(frame, self.cfg).unsqueeze(0)
        state = torch.from_numpy(state_features(check_joints(joint_positions, self.cfg), self.cfg.state.dim))
        if noise is None:
            noise = ChunkNoise.draw(self.cfg, 1, generator=generator, device=self.device, dtype=self.dtype)
        actions = self.sample(frames, state.unsqueeze(0), instruction, noise)
        return self.normalizer.unnormalize(actions[0].float()).cpu().numpy()

    def sample(self, frames: torch.Tensor, state: torch.Tensor, instruction: str, noise: ChunkNoise) -> torch.Tensor:
        """Tensor level: frames [B, 3, S, S], state features [B, state.dim] -> normalised actions
        [B, H, action.dim] (padded dims included)."""
        # The model is shared (e.g. with a trainer that evaluates now and then): eval() at
        # construction does not stop a later train() from switching dropout on under us.
        if self.model.training:
            raise RuntimeError(
                f"{type(self).__name__}: the model is in training mode (model.train() was called after this "
                "was built), so dropout would be active; call model.eval() before serving"
            )
        with torch.no_grad():
            return self._sample(frames, state, instruction, noise)

    def _sample(self, frames: torch.Tensor, state: torch.Tensor, instruction: str, noise: ChunkNoise) -> torch.Tensor:
        raise NotImplementedError


class ReferenceInference(_Inference):
    def _sample(self, frames, state, instruction, noise):
        cfg, dev, dtype, stage = self.cfg, self.device, self.dtype, self.times
        b = frames.shape[0]
        with stage("text", dev):
            text = self.text_encoder.encode([instruction] * b).to(dev, dtype)
        with stage("vae", dev):
            clip = frames.to(dev, dtype).unsqueeze(2).expand(-1, -1, cfg.observation.num_frames, -1, -1)
            cond = self.model.video.encode(clip.contiguous())[:, :, :1]
        with stage("video_dit", dev):
            sigma = torch.full((b,), cfg.video.extract_sigma, device=dev, dtype=torch.float32)
            future = noise.video.to(dev, dtype)
            tokens = self.model.video.hooked_features(torch.cat([cond, future], dim=2), sigma, text)
        state = state.to(dev, dtype)
        step = 0

        def velocity(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
            nonlocal step
            with stage(f"action_step_{step}", dev):
                v = self.model.action(x, tau, state, tokens)
            step += 1
            return v

        return euler_sample(velocity, noise.action.to(dev, dtype), cfg.sampling.steps)


class FastInference(_Inference):
    """The deployable path for a fixed batch size (1 for a robot).

    Built for a model whose device and dtype no longer change (the preallocated buffers belong to
    them). The text context is cached per instruction and goes stale when the weights change: a
    trainer that evaluates with a live model must call `invalidate()` after its optimizer steps
    (and `model.eval()` before querying; `sample` refuses a model in training mode). One query at a
    time: the buffers are reused.
    """

    def __init__(self, model: DiT4DiT, norm_stats: NormStats, text_encoder: TextEncoder, batch_size: int = 1):
        super().__init__(model, norm_stats, text_encoder)
        cfg, dev, dtype = self.cfg, self.device, self.dtype
        self.batch_size = batch_size
        self.trunk = VideoTrunk(model.video)
        self.denoiser = ActionDenoiser(model.action)
        steps = cfg.sampling.steps
        # float32 whatever the model dtype: tau is discretised to int(tau * 1000) inside.
        taus = torch.tensor(tau_schedule(steps), device=dev, dtype=torch.float32)
        self._taus = taus[:, None].expand(-1, batch_size).contiguous()
        self._dt = 1.0 / steps
        self._actions = torch.empty((batch_size, cfg.action.horizon, cfg.action.dim), device=dev, dtype=dtype)
        self._context_for: str | None = None
        self._context: torch.Tensor | None = None

    def invalidate(self) -> None:
        """Forget the cached text context, so the next query recomputes it from the current weights.
        (The action DiT's keys/values are recomputed on every query anyway.)"""
        self._context_for = None
        self._context = None

    @torch.no_grad()
    def context(self, instruction: str) -> torch.Tensor:
        """The DiT's text context [B, L, text_embed_dim] for an instruction, recomputed only when the
        instruction changes."""
        if instruction != self._context_for:
            raw = self.text_encoder.encode([instruction]).to(self.device, self.dtype)
            self._context = self.model.video.project_text(raw).expand(self.batch_size, -1, -1).contiguous()
            self._context_for = instruction
        return self._context

    def _sample(self, frames, state, instruction, noise):
        cfg, dev, dtype, stage = self.cfg, self.device, self.dtype, self.times
        if frames.shape[0] != self.batch_size:
            raise ValueError(f"this FastInference serves batches of {self.batch_size}, got {frames.shape[0]} frames")
        with stage("text", dev):
            context = self.context(instruction)
        with stage("vae", dev):
            cond = self.model.video.encode_current(frames.to(dev, dtype))
        with stage("video_dit", dev):
            tokens = self.trunk(cond, noise.video.to(dev, dtype), context)
        with stage("action_kv", dev):
            keys, values = self.model.action.project_kv(tokens)
            state_token = self.model.action.encode_state(state.to(dev, dtype))
        actions = self._actions
        actions.copy_(noise.action)
        for i in range(cfg.sampling.steps):
            with stage(f"action_step_{i}", dev):
                v = self.denoiser(actions, self._taus[i], state_token, keys, values)
                actions.add_(v, alpha=-self._dt)
        return actions.clone()


def check_frame(frame: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """A model-ready frame [3, S, S], float, finite; anything else is refused by name."""
    s = cfg.observation.image_size
    if not isinstance(frame, torch.Tensor):
        raise ValueError(
            f"frame must be a torch tensor [3, {s}, {s}] (preprocessing.image_to_model), got {type(frame).__name__}"
        )
    if frame.ndim != 3 or frame.shape[0] != 3:
        raise ValueError(f"frame must be [3, {s}, {s}] (3 RGB channels first), got shape {list(frame.shape)}")
    if tuple(frame.shape[1:]) != (s, s):
        raise ValueError(
            f"frame size {frame.shape[1]}x{frame.shape[2]} does not match preset {cfg.name!r}: expected {s}x{s}"
        )
    if not frame.is_floating_point():
        raise ValueError(f"frame must be float RGB in [-1, 1], got dtype {frame.dtype}")
    if not torch.isfinite(frame).all():
        raise ValueError("frame contains NaN or inf")
    # The tolerance only forgives float rounding; a frame left in [0, 255] is far outside it.
    lo, hi = frame.min().item(), frame.max().item()
    if max(-lo, hi) > 1.0 + 1e-3:
        raise ValueError(
            f"frame values span [{lo:.4g}, {hi:.4g}]; frames must be RGB in [-1, 1], as "
            "preprocessing.image_to_model makes them"
        )
    return frame


def check_joints(joint_positions: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Joint angles [state.joints], finite; anything else is refused by name."""
    q = np.asarray(joint_positions, dtype=np.float64)
    n = cfg.state.joints
    if q.shape != (n,):
        raise ValueError(
            f"joint_positions must be a vector of {n} joint angles for preset {cfg.name!r}, got shape {list(q.shape)}"
        )
    bad = np.nonzero(~np.isfinite(q))[0]
    if bad.size:
        raise ValueError(f"joint_positions contain NaN or inf at index(es) {bad.tolist()}")
    return q
