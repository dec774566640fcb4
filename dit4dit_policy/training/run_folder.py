"""The run folder: everything a training run writes, and what `--resume` reads back.

<output.dir>/
  train_config.yaml          the resolved training config (a resume must bring the same)
  metrics.csv                one row per log interval and per validation (`METRICS_COLUMNS`)
  checkpoints/step_NNNNNNN/  the newest `output.keep_checkpoints` checkpoints, each one folder:
    model.safetensors, config.yaml, norm_stats.json    a model checkpoint (`load_checkpoint` reads it)
    optimizer.pt                                       AdamW state, full, keyed by parameter name
    trainer_state.json                                 {"step": completed steps, ...}

A checkpoint folder appears whole or not at all (written beside its final name, then renamed); an
old one is renamed away before it is deleted, so an interrupted deletion never looks like a
checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from dit4dit_policy.files import staged_folder
from dit4dit_policy.model.checkpoint import save_checkpoint
from dit4dit_policy.model.dit4dit import DiT4DiT
from dit4dit_policy.preprocessing import NormStats

CONFIG = "train_config.yaml"
METRICS = "metrics.csv"
CHECKPOINTS = "checkpoints"
OPTIMIZER = "optimizer.pt"
TRAINER_STATE = "trainer_state.json"
_STEP_DIGITS = 7

METRICS_COLUMNS = (
    "step",  # optimiser steps completed
    "loss",  # mean over the log interval: loss_action + video_loss_weight * loss_video
    "loss_action",
    "loss_video",
    "grad_norm",  # before clipping, mean over the interval
    "lr_video",
    "lr_action",
    "samples_per_s",  # global samples per second of wall time over the interval (data loading included)
    "elapsed_s",  # wall time of this process since it started training (restarts at a resume)
    "val_action_error",  # mean |sampled - recorded action| on the held-out episodes, robot units
    "val_copy_state_error",  # the same for holding the current joint state
)


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / CONFIG
        self.metrics = self.path / METRICS
        self.checkpoints = self.path / CHECKPOINTS

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:0{_STEP_DIGITS}d}"

    def saved_steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        steps = []
        for p in self.checkpoints.iterdir():
            name = p.name.removeprefix("step_")
            if p.name.startswith("step_") and name.isdigit() and (p / TRAINER_STATE).is_file():
                steps.append(int(name))
        return sorted(steps)

    def save(
        self,
        step: int,
        model: DiT4DiT,
        norm_stats: NormStats,
        optimizer_state: dict[str, Any],
        trainer_state: dict[str, Any],
        keep: int,
    ) -> Path:
        """Write the checkpoint of `step` whole, then delete all but the newest `keep`."""
        target = self.checkpoint(step)
        with staged_folder(target) as staging:
            save_checkpoint(model, norm_stats, staging, overwrite=True)
            torch.save(optimizer_state, staging / OPTIMIZER)
            (staging / TRAINER_STATE).write_text(json.dumps({"step": step, **trainer_state}, indent=2))
        for old in self.saved_steps()[:-keep]:
            doomed = self.checkpoint(old)
            trash = Path(tempfile.mkdtemp(prefix=f".deleting.{doomed.name}.", dir=self.checkpoints))
            doomed.rename(trash / doomed.name)
            shutil.rmtree(trash)
        return target

    def trainer_state(self, step: int) -> dict[str, Any]:
        return json.loads((self.checkpoint(step) / TRAINER_STATE).read_text())

    def optimizer_state(self, step: int) -> dict[str, Any]:
        # Memory-mapped: every process of a run reads the same file without holding a copy each.
        return torch.load(self.checkpoint(step) / OPTIMIZER, map_location="cpu", weights_only=True, mmap=True)

    def start_metrics(self) -> None:
        _write_rows(self.metrics, [])

    def keep_metrics_until(self, step: int) -> None:
        """Drop the rows after `step` (written after the checkpoint a resume starts from: those steps
        run again)."""
        with self.metrics.open(newline="") as f:
            rows = [row for row in csv.DictReader(f) if int(row["step"]) <= step]
        _write_rows(self.metrics, rows)

    def append_metrics(self, row: dict[str, Any]) -> None:
        with self.metrics.open("a", newline="") as f:
            csv.DictWriter(f, METRICS_COLUMNS).writerow({k: _cell(v) for k, v in row.items()})


def read_metrics(path: str | Path) -> dict[str, list[float]]:
    """metrics.csv as columns of floats (nan where a row has no value)."""
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "step" not in reader.fieldnames:
            raise ValueError(f"{path} is not a metrics file: no header with a 'step' column")
        rows = list(reader)
    return {c: [float(r[c]) if r.get(c) else float("nan") for r in rows] for c in reader.fieldnames}


def _cell(value: Any) -> Any:
    return f"{value:.9g}" if isinstance(value, float) else value  # float32 round-trips


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, METRICS_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
