"""What each step trains on: the datasets, the order of samples, the per-sample seeds, the text.

The global batch of step s is a pure function of (seed, s): the samples of epoch s // steps_per_epoch
in a seeded permutation, cut into batches (the remainder of an epoch is left out). Process r of W
takes the r-th slice of it. Resuming at a step therefore resumes the data exactly, and the run does
not depend on the number of processes (only on the global batch).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dit4dit_policy.data.dataset import TrainingDataset, open_training_dataset
from dit4dit_policy.model.config import ModelConfig
from dit4dit_policy.model.text import CachedTextEncoder
from dit4dit_policy.training.config import TrainConfig


def seed_of(*key: int) -> int:
    """A 63-bit seed that depends on every part of `key` (SeedSequence hashing: no collisions
    between e.g. (seed, step, position) triples that sum alike)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


# Separate seed streams, so that e.g. the data order of epoch e never shares a seed with a sample's noise.
EPOCH_STREAM, SAMPLE_STREAM, VALIDATION_STREAM, LATENT_STATS_STREAM = 0, 1, 2, 3


def sample_seeds(seed: int, step: int, positions: Sequence[int]) -> list[int]:
    """The seeds of the samples at `positions` of step `step`'s global batch (noise, timesteps, dropout)."""
    return [seed_of(seed, SAMPLE_STREAM, step, p) for p in positions]


def seeded_subset(size: int, count: int, seed: int, stream: int) -> list[int]:
    """`count` distinct indices of range(size) (all when size <= count), the same for every process."""
    g = torch.Generator().manual_seed(seed_of(seed, stream))
    return torch.randperm(size, generator=g)[:count].tolist()


def open_datasets(cfg: TrainConfig, model_cfg: ModelConfig) -> tuple[TrainingDataset, TrainingDataset | None]:
    """(training set, validation set or None); the held-out episodes are named by
    `validation.episodes` (the last N, or a list of ids), the rest train."""
    root = Path(cfg.data.root)
    if not root.exists():
        raise FileNotFoundError(f"data.root {str(root)!r} does not exist")
    everything = open_training_dataset(root, model_cfg)
    episodes = list(everything.episodes)
    held = cfg.validation.episodes
    if isinstance(held, list):
        unknown = [e for e in held if e not in episodes]
        if unknown:
            raise ValueError(f"validation.episodes {unknown} are not episodes of {root} (it has {episodes[:8]} ...)")
        val_episodes = [e for e in episodes if e in held]
    else:
        val_episodes = episodes[len(episodes) - held :] if held else []
    train_episodes = [e for e in episodes if e not in val_episodes]
    if not train_episodes:
        raise ValueError(f"validation.episodes holds out all {len(episodes)} episodes of {root}; none left to train")
    train = open_training_dataset(root, model_cfg, episodes=train_episodes) if val_episodes else everything
    val = open_training_dataset(root, model_cfg, episodes=val_episodes) if val_episodes else None
    if len(train) < cfg.train.batch_size:
        raise ValueError(
            f"{root} has {len(train)} training samples, fewer than train.batch_size {cfg.train.batch_size}"
        )
    return train, val


class StepBatches(Sampler[list[int]]):
    """Dataset indices of this process's slice of each step's global batch, from `start` on."""

    def __init__(self, size: int, batch: int, *, seed: int, rank: int, world: int, start: int, steps: int):
        if batch % world:
            raise ValueError(f"train.batch_size {batch} cannot be split evenly over {world} processes")
        self.size, self.batch, self.seed = size, batch, seed
        self.per_process, self.rank = batch // world, rank
        self.start, self.steps = start, steps
        self.steps_per_epoch = size // batch
        self._epoch: tuple[int, torch.Tensor] | None = None

    def global_batch(self, step: int) -> list[int]:
        epoch, i = divmod(step, self.steps_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            g = torch.Generator().manual_seed(seed_of(self.seed, EPOCH_STREAM, epoch))
            self._epoch = (epoch, torch.randperm(self.size, generator=g))
        return self._epoch[1][i * self.batch : (i + 1) * self.batch].tolist()

    def positions(self) -> range:
        """Positions of this process's samples within the global batch."""
        return range(self.rank * self.per_process, (self.rank + 1) * self.per_process)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            whole = self.global_batch(step)
            yield [whole[p] for p in self.positions()]

    def __len__(self) -> int:
        return self.steps - self.start


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Tensors stacked (numpy arrays accepted), instructions as a list."""
    out: dict[str, Any] = {"text": [item["text"] for item in items]}
    for key in items[0]:
        if key != "text":
            out[key] = torch.stack([torch.as_tensor(item[key]) for item in items])
    return out


def loader(dataset: Dataset, sampler: StepBatches, num_workers: int, device: torch.device) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if num_workers else None,
    )


class DeviceText:
    """Instruction strings -> raw embeddings [B, L, D] on the training device. The encoder (frozen,
    cached) runs once per distinct instruction; the embeddings stay on the device (an LRU as large
    as the encoder's memory cache), so a step moves no embedding across the bus and a batch
    repeating one instruction holds one copy of it until the batch is assembled."""

    def __init__(self, encoder: CachedTextEncoder, device: torch.device):
        self.encoder = encoder
        self.device = device
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        unique = list(dict.fromkeys(texts))
        missing = [t for t in unique if t not in self._entries]
        if missing:
            for text, emb in zip(missing, self.encoder.encode(missing), strict=True):
                self._entries[text] = emb.to(self.device)
        for text in unique:
            self._entries.move_to_end(text)
        stacked = torch.stack([self._entries[t] for t in unique])
        while len(self._entries) > max(self.encoder.max_entries, len(unique)):
            self._entries.popitem(last=False)
        slot = {t: i for i, t in enumerate(unique)}
        index = torch.tensor([slot[t] for t in texts], device=self.device)
        return stacked[index]
