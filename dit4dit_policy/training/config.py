"""Training configuration: one YAML file (`config/train_<name>.yaml`), validated into frozen dataclasses.

Every key is required: a training run is described completely by its file, which is copied into
the run folder; `--resume` refuses a file that differs from that copy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dit4dit_policy.config import load_yaml

PRECISIONS = ("fp32", "bf16")
PARALLEL = ("ddp", "fsdp")
DEVICES = ("cpu", "cuda")


def _int(where: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where} must be an int >= {minimum}, got {value!r}")


def _number(where: str, value: Any, *, positive: bool) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ValueError(f"{where} must be a {'positive' if positive else 'non-negative'} number, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    root: str  # dataset folder, read by dit4dit_policy.data.dataset.open_training_dataset
    num_workers: int  # DataLoader worker processes per training process (0: load in the trainer)

    def __post_init__(self) -> None:
        if not isinstance(self.root, str) or not self.root:
            raise ValueError(f"data.root must be a non-empty path, got {self.root!r}")
        _int("data.num_workers", self.num_workers, 0)


@dataclass(frozen=True)
class ModelSection:
    preset: str  # config/model_<preset>.yaml
    cosmos_path: str | None  # local diffusers-format Cosmos-Predict2.5 folder for the video half; null: random
    # A checkpoint folder of this preset whose weights start the run (fine-tuning, e.g. on a dataset
    # with more episodes); null: a new model (cosmos_path, latent_stats_samples).
    init_from: str | None
    # Training frames whose VAE latents set the latent mean/std before the first step (a random VAE
    # has no statistics of its own, see training/latents.py); 0 keeps the preset's (Wan 2.1's).
    latent_stats_samples: int
    text: dict[str, Any]  # overrides of the preset's text section (e.g. path, device, cache_dir)

    def __post_init__(self) -> None:
        if not isinstance(self.preset, str) or not self.preset:
            raise ValueError(f"model.preset must be a preset name, got {self.preset!r}")
        for name in ("cosmos_path", "init_from"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"model.{name} must be a folder path or null, got {value!r}")
        if not isinstance(self.text, dict):
            raise ValueError(f"model.text must be a mapping of text-encoder settings, got {self.text!r}")
        _int("model.latent_stats_samples", self.latent_stats_samples, 0)
        if self.latent_stats_samples and self.cosmos_path is not None:
            raise ValueError(
                "model.latent_stats_samples must be 0 with cosmos_path: the Cosmos VAE's latents come with "
                "their own statistics, the ones its video DiT was trained with"
            )
        if self.init_from is not None and (self.cosmos_path is not None or self.latent_stats_samples):
            raise ValueError(
                "model.init_from takes every weight and the latent statistics from its checkpoint: "
                "cosmos_path must be null and latent_stats_samples 0"
            )


@dataclass(frozen=True)
class TrainSection:
    steps: int  # optimiser steps in the whole run
    batch_size: int  # global: split evenly over the processes
    seed: int  # initialisation, data order and every noise / dropout draw derive from it
    device: str  # cpu | cuda (one GPU per process: cuda:LOCAL_RANK)
    precision: str  # fp32 | bf16 (autocast; weights and optimiser state stay fp32)
    parallel: str  # with several processes: ddp (replicated weights) | fsdp (sharded)
    gradient_checkpointing: bool  # recompute the video DiT's blocks in the backward pass

    def __post_init__(self) -> None:
        _int("train.steps", self.steps, 1)
        _int("train.batch_size", self.batch_size, 1)
        _int("train.seed", self.seed, 0)
        for name, value, allowed in (
            ("device", self.device, DEVICES),
            ("precision", self.precision, PRECISIONS),
            ("parallel", self.parallel, PARALLEL),
        ):
            if value not in allowed:
                raise ValueError(f"train.{name} {value!r} is unknown; use one of {', '.join(allowed)}")
        if not isinstance(self.gradient_checkpointing, bool):
            raise ValueError(f"train.gradient_checkpointing must be true or false, got {self.gradient_checkpointing!r}")


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with two learning rates (video DiT, action DiT); linear warm-up, then cosine to lr_min."""

    lr_video: float
    lr_action: float
    lr_min: float  # both groups end here
    warmup_steps: int
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    grad_clip: float  # max global gradient norm

    def __post_init__(self) -> None:
        for name in ("lr_video", "lr_action", "eps", "grad_clip"):
            _number(f"optimizer.{name}", getattr(self, name), positive=True)
        _number("optimizer.lr_min", self.lr_min, positive=False)
        _number("optimizer.weight_decay", self.weight_decay, positive=False)
        _int("optimizer.warmup_steps", self.warmup_steps, 0)
        if self.lr_min > min(self.lr_video, self.lr_action):
            raise ValueError(f"optimizer.lr_min {self.lr_min} exceeds a peak learning rate")
        if len(self.betas) != 2 or not all(isinstance(b, float) and 0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optimizer.betas must be two numbers in [0, 1), got {list(self.betas)}")


@dataclass(frozen=True)
class OutputConfig:
    dir: str  # the run folder: metrics.csv, train_config.yaml, checkpoints/
    log_every: int  # steps per metrics.csv row and progress update
    checkpoint_every: int  # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int  # newest checkpoints kept; older ones are deleted

    def __post_init__(self) -> None:
        if not isinstance(self.dir, str) or not self.dir:
            raise ValueError(f"output.dir must be a non-empty path, got {self.dir!r}")
        _int("output.log_every", self.log_every, 1)
        _int("output.checkpoint_every", self.checkpoint_every, 1)
        _int("output.keep_checkpoints", self.keep_checkpoints, 1)


@dataclass(frozen=True)
class ValidationConfig:
    episodes: int | list  # held-out episodes: the last N of the dataset, or a list of episode ids
    every: int  # steps between validations (and one at the end); 0: never
    samples: int  # validation samples evaluated, spread evenly over the held-out episodes

    def __post_init__(self) -> None:
        if isinstance(self.episodes, list):
            if not self.episodes:
                raise ValueError("validation.episodes is an empty list; use 0 for no validation")
        else:
            _int("validation.episodes", self.episodes, 0)
        _int("validation.every", self.every, 0)
        _int("validation.samples", self.samples, 1)
        if self.every and not self.episodes:
            raise ValueError("validation.every is set but validation.episodes holds none out")


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelSection,
    "train": TrainSection,
    "optimizer": OptimizerConfig,
    "output": OutputConfig,
    "validation": ValidationConfig,
}


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig
    model: ModelSection
    train: TrainSection
    optimizer: OptimizerConfig
    output: OutputConfig
    validation: ValidationConfig

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for section in _SECTIONS:
            values = dataclasses.asdict(getattr(self, section))
            out[section] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str) -> TrainConfig:
        if not isinstance(data, dict):
            raise ValueError(f"{source}: a training config must be a mapping, got {type(data).__name__}")
        missing, unknown = _SECTIONS.keys() - data.keys(), data.keys() - _SECTIONS.keys()
        if missing or unknown:
            raise ValueError(f"{source}: sections missing {sorted(missing)}, unknown {sorted(map(str, unknown))}")
        return cls(**{key: _section(kind, data[key], f"{source}: {key}") for key, kind in _SECTIONS.items()})

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _section(kind: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(kind)}
    missing, unknown = names - data.keys(), data.keys() - names
    if missing or unknown:
        raise ValueError(f"{where}: fields missing {sorted(missing)}, unknown {sorted(map(str, unknown))}")
    values = {k: tuple(v) if k == "betas" and isinstance(v, list) else v for k, v in data.items()}
    try:
        return kind(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e


def load_train_config(path: str | Path) -> TrainConfig:
    """A training config file; a bare name is looked up in the config folder."""
    return TrainConfig.from_dict(load_yaml(path), source=str(path))


def config_differences(saved: Any, current: Any, where: str = "") -> list[str]:
    """`key.path: saved -> current` for every value that differs between two nested mappings."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [
            line
            for key in sorted(saved.keys() | current.keys(), key=str)
            for line in config_differences(saved.get(key), current.get(key), f"{where}{key}.")
        ]
    return [] if saved == current else [f"{where.rstrip('.')}: {saved!r} -> {current!r}"]
