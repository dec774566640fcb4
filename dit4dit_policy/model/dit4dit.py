"""DiT4DiT: the video DiT (Cosmos) and the action DiT in cascade, as one nn.Module.

The text encoder is not part of it: its output is an input here (raw embeddings
[B, L, text.out_dim]); the policy encodes each instruction once, through a cache.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dit4dit_policy.model.action_dit import ActionDiT
from dit4dit_policy.model.config import ModelConfig
from dit4dit_policy.model.video import VideoBackbone


class DiT4DiT(nn.Module):
    def __init__(self, cfg: ModelConfig, video: VideoBackbone):
        super().__init__()
        self.cfg = cfg
        self.video = video
        self.action = ActionDiT(cfg.action_dit, cfg.action, cfg.state.dim, context_dim=cfg.video.width)
        # `TextEncoder.name` of the encoder the weights were trained with, when known (a checkpoint
        # records it); inference refuses another encoder, whose embeddings the weights never saw.
        self.text_encoder_name: str | None = None

    def features(self, cond_latent: torch.Tensor, future: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Video tokens for the action DiT: the extraction block's output, all tokens."""
        return self.video.trunk(cond_latent, future, context)

    def param_counts(self) -> dict[str, int]:
        return {
            "video_dit": sum(p.numel() for p in self.video.transformer.parameters()),
            "vae": sum(p.numel() for p in self.video.vae.parameters()),
            "action_dit": sum(p.numel() for p in self.action.parameters()),
        }


def build_model(
    cfg: ModelConfig, *, cosmos_path: str | Path | None = None, device: str | torch.device = "cpu"
) -> DiT4DiT:
    """A fresh model. `cosmos_path`: a local diffusers-format Cosmos-Predict2.5 folder whose
    transformer and VAE weights initialise the video half (the action DiT always starts fresh).
    `device="meta"` builds the shapes only, allocating nothing."""
    device = torch.device(device)
    if cosmos_path is not None:
        if device.type == "meta":
            raise ValueError("cosmos_path loads real weights; it cannot be combined with device='meta'")
        video = VideoBackbone.from_cosmos(cfg, cosmos_path)
        return DiT4DiT(cfg, video).to(device)
    with device:
        return DiT4DiT(cfg, VideoBackbone.from_config(cfg))
