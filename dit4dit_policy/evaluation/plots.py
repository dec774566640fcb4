"""PNG plots of evaluations and replays (matplotlib's object API: no pyplot state, no GUI backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

ROW_HEIGHT = 1.6  # inches per joint
WIDTH = 11.0


def _joint_axes(count: int, title: str) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(WIDTH, 1.0 + ROW_HEIGHT * count), layout="constrained")
    axes = fig.subplots(count, 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(title)
    return fig, list(axes)


def open_loop_trajectories(result: Any, names: Sequence[str], path: Path) -> None:
    """Per joint: the recorded command trajectory and every predicted chunk at its action times."""
    fig, axes = _joint_axes(len(names), f"{result.name}: predicted chunks (colour) against recorded commands (black)")
    dt = result.action_period
    times = result.obs_stamps[:, None] + dt * np.arange(1, result.predicted.shape[1] + 1) - result.origin  # [N, H]
    t_cmd = result.command_stamps - result.origin
    keep = (t_cmd >= times.min() - 2 * dt) & (t_cmd <= times.max() + dt)
    for j, (ax, name) in enumerate(zip(axes, names, strict=True)):
        ax.plot(t_cmd[keep], result.command_positions[keep, j], color="black", lw=1.2)
        segments = np.stack([times, result.predicted[:, :, j]], axis=-1)  # [N, H, 2]
        ax.add_collection(LineCollection(segments, cmap="viridis", array=np.arange(len(segments)), lw=0.8, alpha=0.6))
        ax.set_ylabel(f"{name}\n(rad)", fontsize=7)
        ax.autoscale_view()
    axes[-1].set_xlabel("time since the episode's first frame (s)")
    fig.savefig(path, dpi=80)


def error_by_step(error: dict[str, Any], action_period: float, path: Path) -> None:
    """Mean absolute error per chunk step: all joints, and per joint group."""
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.subplots()
    steps = [s["time_s"] for s in error["per_step"]]
    ax.plot(steps, [s["mae"] for s in error["per_step"]], "k-o", label="all joints")
    for group, mae in error["per_group_step_mae"].items():
        ax.plot(steps, mae, "--", marker=".", label=group)
    ax.set_xlabel(f"time of the chunk's action after the observation (s; action period {action_period:g} s)")
    ax.set_ylabel("mean |predicted - recorded| (rad)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=80)


def replay_trajectories(
    streams: dict[str, tuple[np.ndarray, np.ndarray]], names: Sequence[str], title: str, path: Path
) -> None:
    """Per joint, each named stream (times [N], values [N, J]) on one time axis."""
    fig, axes = _joint_axes(len(names), title)
    for j, (ax, name) in enumerate(zip(axes, names, strict=True)):
        for label, (t, q) in streams.items():
            if t.size:
                ax.plot(t, q[:, j], lw=1.0, label=label)
        ax.set_ylabel(f"{name}\n(rad)", fontsize=7)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("recorded time since the bag's start (s)")
    fig.savefig(path, dpi=80)
