"""Latent statistics for a VAE that has none of its own.

The video DiT sees VAE latents normalised per channel, (z - mean) / std. The Wan 2.1 VAE's
published statistics fit the Wan VAE's weights (a Cosmos initialisation brings both); a VAE
initialised at random (the small presets, or no `cosmos_path`) has latents of another scale and
offset: with Wan's statistics the `tiny` preset's latents come out nearly the same constant for
every image (the image moves them by a few percent), and the action DiT is slow to find the image
in them. Measured on training frames instead, the latents have unit spread and the image dominates
them. The statistics live in the model's buffers, so checkpoints and serving carry them.
"""

from __future__ import annotations

import torch

from dit4dit_policy.data.dataset import TrainingDataset
from dit4dit_policy.model.dit4dit import DiT4DiT
from dit4dit_policy.training.distributed import Processes


@torch.no_grad()
def measure_latent_stats(
    model: DiT4DiT, dataset: TrainingDataset, indices: list[int], procs: Processes, batch: int
) -> None:
    """Set the model's latent mean/std to those of the VAE's latents of the frames of `indices`
    (every process passes the same list and encodes its share; the sums are pooled)."""
    video = model.video
    channels = video.latents_mean.numel()
    sums = torch.zeros(3, channels, dtype=torch.float64, device=procs.device)
    mine = indices[procs.rank :: procs.world]
    for start in range(0, len(mine), batch):
        frames = torch.stack([torch.as_tensor(dataset[i]["frames"]) for i in mine[start : start + batch]])
        z = video.vae.encode(frames.to(procs.device, video.latents_mean.dtype).transpose(1, 2)).latent_dist.mode()
        z = z.transpose(0, 1).reshape(channels, -1).double()
        sums += torch.stack([z.sum(1), (z * z).sum(1), torch.full_like(z[:, 0], z.shape[1])])
    total, squares, count = procs.sum(sums)
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    if not torch.isfinite(std).all() or (std <= 0).any():
        raise ValueError(f"the VAE's latents have a channel without spread on {len(indices)} training samples")
    video.latents_mean.copy_(mean.view_as(video.latents_mean))
    video.latents_std.copy_(std.view_as(video.latents_std))
