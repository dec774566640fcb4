"""Validation: the action error of sampled chunks on held-out episodes, in robot units (radians for
joints), next to the error of the trivial policy that holds the current joint state.

The model samples each chunk as it would on the robot (`ReferenceInference`: the current frame, the
state, the instruction, the preset's Euler steps), from noise seeded by the sample's index, so two
validations of the same weights agree whatever the number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import numpy as np
import torch

from dit4dit_policy.data.dataset import TrainingDataset
from dit4dit_policy.model.dit4dit import DiT4DiT
from dit4dit_policy.model.inference import ChunkNoise, ReferenceInference
from dit4dit_policy.model.text import TextEncoder
from dit4dit_policy.preprocessing import ActionNormalizer, NormStats
from dit4dit_policy.training.data import VALIDATION_STREAM, seed_of


@dataclass(frozen=True)
class ValSums:
    """Sums over this process's validation samples; add them up over processes, then divide."""

    error: float  # sum of |predicted - recorded action| over the real entries
    copy_state: float  # the same for the state held over the whole chunk (nan: state and action differ in size)
    entries: float

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.error, self.copy_state, self.entries], dtype=torch.float64)


def spread(n: int, samples: int) -> list[int]:
    """`samples` indices spread evenly over range(n) (all of them when n <= samples)."""
    if n <= samples:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, samples)})


def validate(
    model: DiT4DiT,
    dataset: TrainingDataset,
    indices: list[int],
    norm_stats: NormStats,
    text_encoder: TextEncoder,
    *,
    seed: int,
    batch_size: int,
) -> ValSums:
    """Sums of the action error over `indices` of `dataset` (items as `open_training_dataset`
    gives them). Leaves the model in eval mode."""
    model.eval()
    cfg = model.cfg
    real = cfg.action.real_dim
    infer = ReferenceInference(model, norm_stats, text_encoder)
    normalizer = ActionNormalizer(norm_stats, cfg.action.dim)
    error = copy_state = entries = 0.0
    for start in range(0, len(indices), batch_size):
        items = [(i, dataset[i]) for i in indices[start : start + batch_size]]
        # One instruction per sampler call; consecutive samples of an episode usually share it.
        for instruction, group in groupby(items, key=lambda pair: pair[1]["text"]):
            group = list(group)
            noise = _noise(cfg, [i for i, _ in group], seed, infer.device, infer.dtype)
            frames = torch.stack([torch.as_tensor(item["frames"])[0] for _, item in group])
            state = torch.stack([torch.as_tensor(item["state"]) for _, item in group])
            predicted = normalizer.unnormalize(infer.sample(frames, state, instruction, noise).float().cpu())
            for (_, item), chunk in zip(group, predicted, strict=True):
                recorded = torch.as_tensor(item["actions_raw"], dtype=torch.float32)
                mask = torch.as_tensor(item["action_mask"])[:, :real] > 0
                error += (chunk - recorded).abs()[mask].sum().item()
                held = torch.as_tensor(item["state_raw"], dtype=torch.float32)
                if held.shape[-1] == real:
                    copy_state += (held.expand_as(recorded) - recorded).abs()[mask].sum().item()
                else:
                    copy_state = float("nan")
                entries += mask.sum().item()
    return ValSums(error=error, copy_state=copy_state, entries=entries)


def _noise(cfg, indices: list[int], seed: int, device, dtype) -> ChunkNoise:
    draws = [
        ChunkNoise.draw(cfg, 1, generator=torch.Generator().manual_seed(seed_of(seed, VALIDATION_STREAM, i)))
        for i in indices
    ]
    return ChunkNoise(
        video=torch.cat([d.video for d in draws]).to(device, dtype),
        action=torch.cat([d.action for d in draws]).to(device, dtype),
    )
