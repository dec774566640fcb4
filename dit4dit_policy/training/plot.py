"""Loss and validation curves of a run folder's metrics.csv, drawn to PNG."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from dit4dit_policy.training.run_folder import METRICS, read_metrics

LOSSES = (("loss", "total"), ("loss_action", "action"), ("loss_video", "video"))
VALIDATION = (("val_action_error", "model"), ("val_copy_state_error", "hold current state"))


def plot_run(run_dir: str | Path, out: str | Path | None = None, *, overwrite: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    metrics_file = run_dir / METRICS
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run folder: no {METRICS}")
    out = Path(out) if out is not None else run_dir / "curves.png"
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    columns = read_metrics(metrics_file)
    has_val = any(math.isfinite(v) for v in columns.get("val_action_error", []))
    fig, axes = plt.subplots(2 if has_val else 1, 1, figsize=(8, 7 if has_val else 4), sharex=True, squeeze=False)
    drawn = _lines(axes[0, 0], columns, LOSSES)
    if not drawn:
        plt.close(fig)
        raise ValueError(f"{metrics_file} holds no logged loss yet")
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_ylabel("flow-matching loss")
    if has_val:
        _lines(axes[1, 0], columns, VALIDATION, marker="o")
        axes[1, 0].set_ylabel("validation action error\n(robot units, rad)")
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(run_dir.resolve().name)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return out


def _lines(ax, columns: dict[str, list[float]], series, marker: str | None = None) -> int:
    drawn = 0
    for key, label in series:
        points = [(s, v) for s, v in zip(columns["step"], columns.get(key, []), strict=False) if math.isfinite(v)]
        if points:
            ax.plot(*zip(*points, strict=True), label=label, marker=marker)
            drawn += 1
    if drawn:
        ax.legend()
        ax.grid(True, alpha=0.3)
    return drawn
