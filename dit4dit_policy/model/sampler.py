"""Euler integration of the action flow from tau = 1 (noise) to tau = 0 (actions)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def tau_schedule(steps: int) -> list[float]:
    """Flow times at which the velocity is evaluated: 1, 1 - 1/steps, ..., 1/steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [1.0 - i / steps for i in range(steps)]


def euler_sample(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor, steps: int
) -> torch.Tensor:
    """x <- x - (1/steps) v(x, tau) at each tau of the schedule, starting from x = noise.
    `velocity` takes x and tau as a [B] tensor."""
    x = noise
    dt = 1.0 / steps
    for tau in tau_schedule(steps):
        t = torch.full((x.shape[0],), tau, dtype=torch.float32, device=x.device)
        x = x.add(velocity(x, t), alpha=-dt)
    return x
