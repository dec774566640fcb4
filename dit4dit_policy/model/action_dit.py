"""The action DiT: a GR00T-N1-style flow-matching transformer over [state token | H action tokens].

Even blocks cross-attend to the video tokens (the raw hidden states of the video DiT), odd blocks
self-attend. AdaLN shift/scale from the action timestep precedes each attention; a plain LayerNorm
precedes the feed-forward. The cross-attention keys/values depend on the video tokens only, so
`project_kv` computes them once per chunk and `denoise` (one Euler step's network call) reuses
them; `forward` is the plain path that recomputes them on every call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dit4dit_policy.model.config import ActionConfig, ActionDiTConfig

TIMESTEP_BUCKETS = 1000  # tau is discretised to int(tau * 1000) before embedding


def sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[...] -> [..., dim]: cos then sin of t at geometrically spaced frequencies (1 ... 1e-4)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / half))
    angles = t.float().unsqueeze(-1) * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def discretise(tau: torch.Tensor) -> torch.Tensor:
    """Flow time in [0, ~1] -> integer-valued bucket as float (int() truncation; tau >= 0)."""
    return torch.floor(tau * TIMESTEP_BUCKETS)


class MLP(nn.Sequential):
    def __init__(self, d_in: int, hidden: int, d_out: int):
        super().__init__(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class AdaNorm(nn.Module):
    """LayerNorm without affine, then x * (1 + scale) + shift from the timestep embedding."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=eps)
        self.linear = nn.Linear(width, 2 * width)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(temb)).unsqueeze(1).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, context_dim: int | None, dropout: float):
        super().__init__()
        self.heads = heads
        kv_in = width if context_dim is None else context_dim
        self.to_q = nn.Linear(width, width)
        self.to_k = nn.Linear(kv_in, width)
        self.to_v = nn.Linear(kv_in, width)
        self.to_out = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [B, heads, N, head_dim]

    def kv(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.to_k(source)), self.split(self.to_v(source))

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self.split(self.to_q(x)), k, v)
        return self.dropout(self.to_out(out.transpose(1, 2).flatten(2)))


class Block(nn.Module):
    def __init__(self, cfg: ActionDiTConfig, context_dim: int | None):
        super().__init__()
        w = cfg.width
        self.cross = context_dim is not None
        self.norm1 = AdaNorm(w, eps=1e-5)
        self.attn = Attention(w, cfg.num_heads, context_dim, cfg.dropout)
        self.norm2 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-5)
        self.ff = nn.Sequential(
            nn.Linear(w, cfg.ffn_mult * w),
            nn.GELU(approximate="tanh"),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.ffn_mult * w, w),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None):
        y = self.norm1(x, temb)
        k, v = kv if self.cross else self.attn.kv(y)
        x = x + self.attn.attend(y, k, v)
        return x + self.ff(self.norm2(x))


class ActionDiT(nn.Module):
    def __init__(self, cfg: ActionDiTConfig, action: ActionConfig, state_dim: int, context_dim: int):
        super().__init__()
        w, action_dim, horizon = cfg.width, action.dim, action.horizon
        self.cfg = cfg
        self.horizon = horizon
        # Padded action dims are zeroed on the way in and out: the network never sees them (their
        # training targets are masked out of the loss, so anything it did with them would be noise).
        # Persistent, so that a checkpoint loaded onto an empty (meta-built) model carries it.
        real = torch.zeros(action_dim)
        real[: action.real_dim] = 1.0
        self.register_buffer("real_dims", real)
        self.time_embed = nn.Sequential(nn.Linear(cfg.timestep_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.state_encoder = MLP(state_dim, cfg.state_hidden, w)
        self.action_in = nn.Linear(action_dim, w)
        self.action_mix = nn.Linear(2 * w, w)
        self.action_out = nn.Linear(w, w)
        self.pos_embed = nn.Parameter(torch.randn(horizon, w) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg, context_dim if i % 2 == 0 else None) for i in range(cfg.num_layers))
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.out_mod = nn.Linear(w, 2 * w)
        self.proj_out = nn.Linear(w, w)
        self.decoder = MLP(w, cfg.decoder_hidden, action_dim)

    @property
    def cross_blocks(self) -> list[Block]:
        return [b for b in self.blocks if b.cross]

    def project_kv(self, video_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Video tokens [B, N, context_dim] -> keys, values [n_cross, B, heads, N, head_dim]."""
        pairs = [b.attn.kv(video_tokens) for b in self.cross_blocks]
        return torch.stack([k for k, _ in pairs]), torch.stack([v for _, v in pairs])

    def encode_state(self, state: torch.Tensor) -> torch.Tensor:
        """State features [B, state_dim] -> the state token [B, 1, width]."""
        return self.state_encoder(state).unsqueeze(1)

    def denoise(
        self,
        actions: torch.Tensor,
        tau: torch.Tensor,
        state_token: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
    ) -> torch.Tensor:
        """One network call: noisy actions [B, H, A] at flow time tau [B] -> velocity [B, H, A]."""
        t = discretise(tau)
        temb = self.time_embed(sinusoid(t, self.cfg.timestep_dim).to(actions.dtype))
        tau_feat = sinusoid(t, self.cfg.width).to(actions.dtype).unsqueeze(1).expand(-1, self.horizon, -1)
        a = self.action_in(actions * self.real_dims)
        a = self.action_out(F.silu(self.action_mix(torch.cat([a, tau_feat], dim=-1))))
        x = torch.cat([state_token, a + self.pos_embed], dim=1)
        i = 0
        for block in self.blocks:
            if block.cross:
                x = block(x, temb, (keys[i], values[i]))
                i += 1
            else:
                x = block(x, temb, None)
        shift, scale = self.out_mod(F.silu(temb)).unsqueeze(1).chunk(2, dim=-1)
        x = self.proj_out(self.norm_out(x) * (1 + scale) + shift)
        return self.decoder(x[:, -self.horizon :]) * self.real_dims

    def forward(
        self, actions: torch.Tensor, tau: torch.Tensor, state: torch.Tensor, video_tokens: torch.Tensor
    ) -> torch.Tensor:
        """The plain path: everything, keys/values included, from scratch."""
        keys, values = self.project_kv(video_tokens)
        return self.denoise(actions, tau, self.encode_state(state), keys, values)


class ActionDenoiser(nn.Module):
    """Export boundary: one denoising step as a tensor-only module."""

    def __init__(self, action_dit: ActionDiT):
        super().__init__()
        self.action_dit = action_dit

    def forward(self, actions, tau, state_token, keys, values) -> torch.Tensor:
        return self.action_dit.denoise(actions, tau, state_token, keys, values)
