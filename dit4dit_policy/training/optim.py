"""AdamW over the two trainable halves of DiT4DiT, with the reference's learning-rate schedule.

The schedule is a pure function of the step, so resuming at a step restores it exactly; the frozen
VAE (and the text encoder, which is not part of the model) get no optimiser state at all.
"""

from __future__ import annotations

import math

import torch

from dit4dit_policy.model.dit4dit import DiT4DiT
from dit4dit_policy.training.config import OptimizerConfig

GROUPS = ("video", "action")  # param-group order: video DiT, action DiT


def learning_rate(step: int, peak: float, cfg: OptimizerConfig, total_steps: int) -> float:
    """The rate for optimiser step `step` (0-based): linear warm-up from peak / warmup_steps to
    peak over warmup_steps, then a half cosine from peak down to lr_min at the last step."""
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    decay_steps = max(total_steps - 1 - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / decay_steps, 1.0)
    return cfg.lr_min + 0.5 * (peak - cfg.lr_min) * (1 + math.cos(math.pi * progress))


def build_optimizer(model: DiT4DiT, cfg: OptimizerConfig) -> torch.optim.AdamW:
    """Two param groups, video DiT then action DiT, each with its own peak rate. Every trainable
    parameter of the model must belong to exactly one of them."""
    video = [p for p in model.video.transformer.parameters() if p.requires_grad]
    action = [p for p in model.action.parameters() if p.requires_grad]
    grouped = {id(p) for p in video + action}
    stray = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in grouped]
    if stray:
        raise RuntimeError(f"trainable parameters outside the video and action DiT: {stray[:8]}")
    groups = [
        {"params": video, "lr": cfg.lr_video, "peak_lr": cfg.lr_video, "name": "video"},
        {"params": action, "lr": cfg.lr_action, "peak_lr": cfg.lr_action, "name": "action"},
    ]
    return torch.optim.AdamW(groups, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def set_learning_rates(optimizer: torch.optim.Optimizer, step: int, cfg: OptimizerConfig, total_steps: int) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, group["peak_lr"], cfg, total_steps)
