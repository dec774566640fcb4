"""Flow matching, DiT4DiT's convention: x_tau = (1 - tau) x0 + tau noise, tau = 1 is pure noise,
and the network predicts the velocity v = noise - x0 (so dx/dtau = v)."""

from __future__ import annotations

import torch


def _per_sample(tau: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    if isinstance(tau, torch.Tensor):
        return tau.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))
    return tau


def interpolate(x0: torch.Tensor, noise: torch.Tensor, tau: torch.Tensor | float) -> torch.Tensor:
    """x_tau for a per-sample tau [B] (or one float for all)."""
    t = _per_sample(tau, x0)
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def sample_action_tau(
    n: int, alpha: float, scale: float, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """tau_a = s / scale with s ~ Beta(alpha, 1), by inverse CDF (s = u^(1/alpha)) so that a
    torch.Generator controls it."""
    u = torch.rand(n, generator=generator, device=device)
    return u.pow(1.0 / alpha) / scale


def video_flow_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over the future latent frames only: [B, C, T, h, w]; frame 0 is the clean condition."""
    return torch.mean((pred[:, :, 1:].float() - target[:, :, 1:].float()) ** 2)


def action_flow_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over the entries where mask is 1 (real action dims, real chunk steps)."""
    m = mask.to(torch.float32)
    denom = m.sum()
    if denom == 0:
        raise ValueError("action mask selects no entries: the action loss would be undefined")
    return ((pred.float() - target.float()) ** 2 * m).sum() / denom
