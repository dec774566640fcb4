"""Progress on the terminal (main process only): a rich bar with the loss parts and throughput; where
the output is not a terminal (a log file, a CI job), one plain line per log interval instead."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def describe(row: dict[str, Any]) -> str:
    parts = []
    if "loss" in row:
        parts.append(
            f"loss {row['loss']:.4f} (action {row['loss_action']:.4f}, video {row['loss_video']:.4f}) "
            f"|g| {row['grad_norm']:.3g}  {row['samples_per_s']:.1f} samples/s"
        )
    if "val_action_error" in row:
        baseline = row["val_copy_state_error"]
        parts.append(
            f"val error {row['val_action_error']:.4f}"
            + ("" if math.isnan(baseline) else f" (hold state {baseline:.4f})")
        )
    return "  ".join(parts)


class TrainProgress:
    def __init__(self, console: Console | None, start: int, total: int, enabled: bool):
        self.console = console or Console()
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self._bar = Progress(
            TextColumn("step"),
            MofNCompleteColumn(),
            BarColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=not self.live,
        )
        self._task = self._bar.add_task("train", total=total, completed=start, status="")

    def __enter__(self) -> TrainProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def step(self, step: int, row: dict[str, Any]) -> None:
        """`step` steps completed; `row` holds whatever was measured at it (possibly nothing)."""
        if not self.enabled:
            return
        text = describe(row)
        if self.live:
            self._bar.update(self._task, completed=step, **({"status": text} if text else {}))
        elif text:
            self.console.print(f"step {step}: {text}", highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, highlight=False, soft_wrap=True)
