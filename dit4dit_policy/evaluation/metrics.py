"""Error and latency figures shared by the open-loop evaluation and the replay comparison."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dit4dit_policy.joint_table import GROUPS, load_joint_table


def joint_groups(names: Sequence[str]) -> dict[str, list[str]]:
    """The joint table's groups (leg, waist, arm, hand) that `names` touch, each with its names in
    `names` order; KeyError naming a joint the table does not have."""
    table = load_joint_table()
    group_of = {j.name: j.group for j in table.joints}
    unknown = [n for n in names if n not in group_of]
    if unknown:
        raise KeyError(f"joint(s) {unknown} are not in the joint table {table.variant}")
    return {g: [n for n in names if group_of[n] == g] for g in GROUPS if any(group_of[n] == g for n in names)}


def error_stats(errors: np.ndarray) -> dict[str, float]:
    """mae, rmse and max_abs of an array of errors (radians), NaN entries left out."""
    e = np.abs(np.asarray(errors, dtype=np.float64))
    e = e[np.isfinite(e)]
    if e.size == 0:
        raise ValueError("no finite errors to summarise")
    return {"mae": float(e.mean()), "rmse": float(np.sqrt(np.mean(e**2))), "max_abs": float(e.max())}


def joint_error_stats(errors: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Figures of errors [..., J] (last axis: joints in `names` order): overall, per joint group
    and per joint."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.shape[-1] != len(names):
        raise ValueError(f"errors have {errors.shape[-1]} joints, names {len(names)}")
    index = {n: i for i, n in enumerate(names)}
    return {
        **error_stats(errors),
        "per_group": {
            g: error_stats(errors[..., [index[n] for n in members]]) for g, members in joint_groups(names).items()
        },
        "per_joint": {n: error_stats(errors[..., i]) for n, i in index.items()},
    }


def latency_stats(seconds: Sequence[float]) -> dict[str, float | int]:
    """Inference latency in ms: the first call on its own (it fills caches: text context, kernels),
    then p50, p99, max and mean of the rest."""
    s = np.asarray(seconds, dtype=np.float64) * 1e3
    if s.size == 0:
        raise ValueError("no latencies to summarise")
    rest = s[1:] if s.size > 1 else s
    return {
        "count": int(s.size),
        "first_ms": float(s[0]),
        "p50_ms": float(np.percentile(rest, 50)),
        "p99_ms": float(np.percentile(rest, 99)),
        "max_ms": float(rest.max()),
        "mean_ms": float(rest.mean()),
    }
