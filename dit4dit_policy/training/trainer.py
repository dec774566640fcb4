"""The training loop: `train(cfg)` in one process, or in each process that torchrun starts.

A step: the global batch of that step (`data.StepBatches`), this process's slice of it on the
device, the loss with per-sample seeds (so the draws do not depend on the split), the action loss
rescaled to the batch-wide mean, backward, global gradient-norm clipping, AdamW at the step's
learning rates. Everything random is a function of (seed, step, sample), so a resume at a
checkpoint replays exactly what the uninterrupted run would have done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console

from dit4dit_policy.model.checkpoint import load_checkpoint
from dit4dit_policy.model.config import ModelConfig, load_preset
from dit4dit_policy.model.dit4dit import DiT4DiT, build_model
from dit4dit_policy.model.loss import TrainBatch
from dit4dit_policy.model.text import build_text_encoder
from dit4dit_policy.preprocessing import NormStats
from dit4dit_policy.training.config import TrainConfig, config_differences
from dit4dit_policy.training.data import (
    LATENT_STATS_STREAM,
    DeviceText,
    StepBatches,
    loader,
    open_datasets,
    sample_seeds,
    seeded_subset,
)
from dit4dit_policy.training.distributed import Processes, Wrapped
from dit4dit_policy.training.latents import measure_latent_stats
from dit4dit_policy.training.optim import build_optimizer, set_learning_rates
from dit4dit_policy.training.progress import TrainProgress
from dit4dit_policy.training.run_folder import RunFolder
from dit4dit_policy.training.validate import spread, validate


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int  # optimiser steps completed
    checkpoint: Path  # the newest checkpoint


def train(cfg: TrainConfig, *, resume: bool = False, console: Console | None = None) -> TrainResult:
    """Train as `cfg` says, writing the run folder `cfg.output.dir`. A folder that already holds a
    run is continued only with `resume=True` (from its newest checkpoint, with the same config)."""
    procs = Processes.start(cfg.train.device)
    try:
        return _Run(cfg, procs, resume, console).run()
    finally:
        procs.close()


def _check_folder(cfg: TrainConfig, run: RunFolder, resume: bool) -> tuple[int | None, str | None]:
    """(step to resume from, or None for a fresh run; the problem that forbids starting, if any)."""
    if not resume:
        if run.path.exists() and any(run.path.iterdir()):
            return None, (
                f"output.dir {run.path} already holds files; pass --resume to continue its run, "
                "or choose another output.dir"
            )
        return None, None
    if not run.config.is_file():
        return None, f"cannot resume: {run.path} holds no training run (no {run.config.name})"
    try:
        saved = TrainConfig.from_dict(yaml.safe_load(run.config.read_text()), source=str(run.config)).to_dict()
    except (ValueError, yaml.YAMLError) as e:
        return None, f"cannot resume: {e}"
    current = cfg.to_dict()
    # The folder may have moved since: where it is now is not part of what the run is.
    saved["output"]["dir"] = current["output"]["dir"]
    differences = config_differences(saved, current)
    if differences:
        return None, f"cannot resume {run.path} with another config; it differs in " + "; ".join(differences)
    steps = run.saved_steps()
    if not steps:
        return None, f"cannot resume: {run.path} has no complete checkpoint yet; start afresh in an empty output.dir"
    return steps[-1], None


class _Run:
    def __init__(self, cfg: TrainConfig, procs: Processes, resume: bool, console: Console | None):
        self.cfg, self.procs = cfg, procs
        self.folder = RunFolder(cfg.output.dir)
        resume_step, problem = _check_folder(cfg, self.folder, resume)
        procs.agree(problem)
        self.start = resume_step or 0
        # Everything that can fail on bad input (preset, dataset, text encoder, checkpoint) comes
        # before the first write, so a run that cannot start leaves no folder behind to refuse later.
        self.model_cfg = load_preset(cfg.model.preset)
        self.train_set, self.val_set = open_datasets(cfg, self.model_cfg)
        self.norm_stats = self.train_set.norm_stats
        self.encoder = build_text_encoder(self.model_cfg.text.encoder_config(**cfg.model.text))
        self.model = self._model(resume_step)
        self.wrapped = Wrapped(self.model, procs, cfg.train.parallel)
        self.optimizer = build_optimizer(self.model, cfg.optimizer)
        if resume_step is not None:
            self.wrapped.load_optimizer_state(self.optimizer, self.folder.optimizer_state(resume_step))
        self.params = [p for p in self.wrapped.module.parameters() if p.requires_grad]
        self.text = DeviceText(self.encoder, procs.device)
        self.progress = TrainProgress(console, self.start, cfg.train.steps, enabled=procs.is_main)
        procs.barrier()  # every process has looked at the folder before the main one writes to it
        if procs.is_main:
            self._prepare_folder(resume_step)

    def _prepare_folder(self, resume_step: int | None) -> None:
        self.folder.path.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.folder.config.write_text(self.cfg.dump())
            self.folder.start_metrics()
        elif self.folder.metrics.is_file():
            self.folder.keep_metrics_until(resume_step)
        else:
            self.folder.start_metrics()

    def _model(self, resume_step: int | None) -> DiT4DiT:
        init_from = self.cfg.model.init_from
        if resume_step is not None:
            folder = self.folder.checkpoint(resume_step)
            model, saved_stats = self._load(folder, "resume from")
            if saved_stats != self.norm_stats:
                raise ValueError(
                    f"cannot resume from {folder}: the dataset's action normalisation statistics differ from "
                    "the checkpoint's (the training episodes changed)"
                )
        elif init_from is not None:
            # Fine-tuning: the weights (latent statistics included) carry over; the actions are
            # normalised with this dataset's statistics, which the first steps adapt the head to.
            model, _ = self._load(Path(init_from), "start from")
        else:
            torch.manual_seed(self.cfg.train.seed)  # the same initial weights in every process
            model = build_model(self.model_cfg, cosmos_path=self.cfg.model.cosmos_path).to(self.procs.device)
            if self.cfg.model.latent_stats_samples:
                count, seed = self.cfg.model.latent_stats_samples, self.cfg.train.seed
                indices = seeded_subset(len(self.train_set), count, seed, LATENT_STATS_STREAM)
                batch = self.cfg.train.batch_size // self.procs.world
                measure_latent_stats(model, self.train_set, indices, self.procs, batch)
        model.text_encoder_name = self.encoder.name
        model.train().to(self.procs.device)
        if self.cfg.train.gradient_checkpointing:
            model.video.transformer.enable_gradient_checkpointing()
        return model

    def _load(self, folder: Path, what: str) -> tuple[DiT4DiT, NormStats]:
        """A checkpoint's model and normalisation statistics, refused unless its model config and
        text encoder are this run's."""
        model, saved_stats = load_checkpoint(folder)
        _same_model(folder, model.cfg, self.model_cfg, what)
        if model.text_encoder_name != self.encoder.name:
            raise ValueError(
                f"cannot {what} {folder}: it was trained with text encoder {model.text_encoder_name!r}, "
                f"this run builds {self.encoder.name!r}"
            )
        return model, saved_stats

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, procs = self.cfg, self.procs
        steps = cfg.train.steps
        sampler = StepBatches(
            len(self.train_set),
            cfg.train.batch_size,
            seed=cfg.train.seed,
            rank=procs.rank,
            world=procs.world,
            start=self.start,
            steps=steps,
        )
        batches = loader(self.train_set, sampler, cfg.data.num_workers, procs.device)
        if self.start:
            self.progress.note(f"resuming {self.folder.path} at step {self.start}")
        interval = _Interval(procs.device)
        began = time.perf_counter()
        with self.progress:
            for step, raw in zip(range(self.start, steps), batches, strict=True):
                interval.add(self._step(step, raw, sampler))
                done, row = step + 1, {}
                if done % cfg.output.log_every == 0 or done == steps:
                    row |= interval.flush(cfg.train.batch_size, self.optimizer)
                    row["elapsed_s"] = time.perf_counter() - began
                if cfg.validation.every and (done % cfg.validation.every == 0 or done == steps):
                    row |= self._validate()
                # The row before the checkpoint: a resume from it keeps the rows up to its step.
                if row and procs.is_main:
                    self.folder.append_metrics({"step": done, **row})
                if done % cfg.output.checkpoint_every == 0 or done == steps:
                    self._checkpoint(done)
                self.progress.step(done, row)
        return TrainResult(run_dir=self.folder.path, step=steps, checkpoint=self.folder.checkpoint(steps))

    def _step(self, step: int, raw: dict[str, Any], sampler: StepBatches) -> torch.Tensor:
        cfg = self.cfg
        set_learning_rates(self.optimizer, step, cfg.optimizer, cfg.train.steps)
        seeds = sample_seeds(cfg.train.seed, step, sampler.positions())
        return train_step(
            self.wrapped, self.optimizer, self._batch(raw), seeds, self.procs, self.params, cfg, self.model_cfg
        )

    def _batch(self, raw: dict[str, Any]) -> TrainBatch:
        dev = self.procs.device
        return TrainBatch(
            frames=raw["frames"].to(dev, non_blocking=True),
            state=raw["state"].to(dev, non_blocking=True),
            actions=raw["actions"].to(dev, non_blocking=True),
            action_mask=raw["action_mask"].to(dev, non_blocking=True),
            text=self.text(raw["text"]),
        )

    def _validate(self) -> dict[str, float]:
        cfg, procs = self.cfg, self.procs
        indices = spread(len(self.val_set), cfg.validation.samples)[procs.rank :: procs.world]
        with self.wrapped.gathered(), autocast(cfg, procs.device):
            sums = validate(
                self.model,
                self.val_set,
                indices,
                self.norm_stats,
                self.encoder,
                seed=cfg.train.seed,
                batch_size=cfg.train.batch_size // procs.world,
            )
        self.model.train()
        error, copy_state, entries = procs.sum(sums.as_tensor()).tolist()
        return {"val_action_error": error / entries, "val_copy_state_error": copy_state / entries}

    def _checkpoint(self, step: int) -> None:
        # Both gathers are collective under FSDP: every process takes part, the main one writes.
        state = self.wrapped.full_state() if self.wrapped.fsdp else None
        optimizer_state = self.wrapped.optimizer_state(self.optimizer)
        if self.procs.is_main:
            model = self.model if state is None else _bare_model(self.model, state)
            trainer_state = {"world_size": self.procs.world, "samples_seen": step * self.cfg.train.batch_size}
            self.folder.save(
                step, model, self.norm_stats, optimizer_state, trainer_state, self.cfg.output.keep_checkpoints
            )
        self.procs.barrier()


def autocast(cfg: TrainConfig, device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16")


def train_step(
    wrapped: Wrapped,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    seeds: list[int],
    procs: Processes,
    params: list[torch.nn.Parameter],
    cfg: TrainConfig,
    model_cfg: ModelConfig,
) -> torch.Tensor:
    """One optimiser step on this process's part of a global batch (at the learning rates already
    set), `seeds` one per sample (`data.sample_seeds`). Returns [loss, action loss, video loss,
    gradient norm] of the whole global batch."""
    with autocast(cfg, procs.device):
        action, video, entries = wrapped.module(batch, seeds)
    # DDP/FSDP average gradients over processes; rescaling each process's action loss by its share
    # of the batch's action entries makes that average the gradient of the whole batch's mean.
    entries = entries.detach()
    all_entries = procs.sum(entries)
    weight = model_cfg.training.video_loss_weight
    (action * (entries * procs.world / all_entries) + weight * video).backward()
    norm = torch.nn.utils.clip_grad_norm_(params, cfg.optimizer.grad_clip)
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP: a replicated DTensor
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sums = procs.sum(torch.stack([action.detach().float() * entries, video.detach().float()]))
    action_mean, video_mean = sums[0] / all_entries, sums[1] / procs.world
    return torch.stack([action_mean + weight * video_mean, action_mean, video_mean, norm.detach().float()])


class _Interval:
    """Per-step [loss, action loss, video loss, grad norm] summed on the device until the next log
    row (no host synchronisation in between)."""

    def __init__(self, device: torch.device):
        self.sum = torch.zeros(4, device=device)
        self.steps = 0
        self.since = time.perf_counter()

    def add(self, values: torch.Tensor) -> None:
        self.sum += values
        self.steps += 1

    def flush(self, global_batch: int, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        loss, action, video, norm = (self.sum / self.steps).tolist()
        now = time.perf_counter()
        lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
        row = {
            "loss": loss,
            "loss_action": action,
            "loss_video": video,
            "grad_norm": norm,
            "lr_video": lrs["video"],
            "lr_action": lrs["action"],
            "samples_per_s": self.steps * global_batch / (now - self.since),
        }
        self.sum.zero_()
        self.steps, self.since = 0, now
        return row


def _bare_model(model: DiT4DiT, state: dict[str, torch.Tensor]) -> DiT4DiT:
    """A CPU model holding the gathered full `state` of the (sharded) `model`, for writing."""
    copy = build_model(model.cfg, device="meta")
    copy.load_state_dict(state, assign=True)
    copy.text_encoder_name = model.text_encoder_name
    return copy


def _same_model(folder: Path, saved: ModelConfig, current: ModelConfig, what: str) -> None:
    if saved != current:
        differences = config_differences(saved.to_dict(), current.to_dict())
        raise ValueError(f"cannot {what} {folder}: it was made with another model config: " + "; ".join(differences))
