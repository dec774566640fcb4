"""Differences between two closed-loop replays of one episode (e.g. an old and a new checkpoint).

Each stream is read on a common grid (`rate` Hz over the union of both replays' spans) as the
bridge reads commands: the newest sample at or before the grid time, if it is at most `MAX_AGE`
old (the bridge's hold_after: an older command no longer drives the robot). Where both replays
have a value the difference is summarised per joint and joint group (radians); where only one
has, it is counted: one checkpoint commanding while the other holds is a difference too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dit4dit_policy.evaluation.metrics import joint_error_stats
from dit4dit_policy.evaluation.replay_record import STREAMS, ReplayRecord, Stream
from dit4dit_policy.files import staged_folder

MAX_AGE = 0.1  # s
GRID_RATE = 50.0  # Hz: the policy node's control rate
COMPARISON_FILE = "comparison.json"
PLOT_FILE = "comparison.png"


def held_values(stream: Stream, grid: np.ndarray, max_age: float = MAX_AGE) -> np.ndarray:
    """The stream's newest value at or before each grid time, NaN where none is at most `max_age` old."""
    out = np.full((grid.size, stream.q.shape[1]), np.nan)
    if stream.t.size == 0:
        return out
    i = np.searchsorted(stream.t, grid, side="right") - 1
    fresh = (i >= 0) & (grid - stream.t[np.maximum(i, 0)] <= max_age)
    out[fresh] = stream.q[i[fresh]]
    return out


def compare_streams(a: Stream, b: Stream, names: tuple[str, ...], rate: float = GRID_RATE) -> dict[str, Any]:
    starts = [s.t[0] for s in (a, b) if s.t.size]
    ends = [s.t[-1] for s in (a, b) if s.t.size]
    if not starts:
        return {"span_s": None, "grid_points": 0, "both": 0, "only_a": 0, "only_b": 0, "difference": None}
    lo, hi = min(starts), max(ends)
    grid = lo + np.arange(int(np.floor((hi - lo) * rate)) + 1) / rate
    va, vb = held_values(a, grid), held_values(b, grid)
    has_a, has_b = ~np.isnan(va[:, 0]), ~np.isnan(vb[:, 0])
    both = has_a & has_b
    return {
        "span_s": [float(lo), float(hi)],
        "grid_points": int(grid.size),
        "both": int(both.sum()),
        "only_a": int((has_a & ~has_b).sum()),
        "only_b": int((has_b & ~has_a).sum()),
        "difference": joint_error_stats(vb[both] - va[both], names) if both.any() else None,
    }


def compare_replays(a: ReplayRecord, b: ReplayRecord) -> dict[str, Any]:
    """Figures of b - a for both streams; ValueError if the two replays are not comparable."""
    episodes = [r.info.get("episode_name") for r in (a, b)]
    if episodes[0] != episodes[1]:
        raise ValueError(f"the replays are of different episodes: {episodes[0]} and {episodes[1]}")
    if a.names != b.names:
        raise ValueError(f"the replays command different joints: {list(a.names)} and {list(b.names)}")
    return {
        "episode": episodes[0],
        "a": {k: a.info.get(k) for k in ("checkpoint", "speed")},
        "b": {k: b.info.get(k) for k in ("checkpoint", "speed")},
        "joints": list(a.names),
        "grid_rate_hz": GRID_RATE,
        "max_age_s": MAX_AGE,
        "units": "radians, b - a",
        "streams": {s: compare_streams(getattr(a, s), getattr(b, s), a.names) for s in STREAMS},
    }


def run_compare(a_folder: Path, b_folder: Path, out: Path, *, force: bool = False) -> dict[str, Any]:
    """Compare two replay folders; write out/comparison.json and out/comparison.png."""
    from dit4dit_policy.evaluation import plots

    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    a, b = ReplayRecord.read(a_folder), ReplayRecord.read(b_folder)
    result = compare_replays(a, b)
    result["a"]["folder"], result["b"]["folder"] = str(a_folder), str(b_folder)
    streams = {f"{tag} {s}": (getattr(r, s).t, getattr(r, s).q) for tag, r in (("A", a), ("B", b)) for s in STREAMS}
    with staged_folder(out) as staging:
        title = f"{result['episode']}: A = {a_folder.name}, B = {b_folder.name}"
        plots.replay_trajectories(streams, a.names, title, staging / PLOT_FILE)
        (staging / COMPARISON_FILE).write_text(json.dumps(result, indent=2))
    return result
