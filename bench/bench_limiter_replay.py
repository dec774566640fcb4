"""Replay the policy's commands from a demo run through the safety limiter alone: how often it clips them.

The demo writes each episode's commands, as the policy published them (header stamps, positions),
to runs/demo/commands.npz. Here each episode goes through a SafetyLimiter at 500 Hz as the bridge
runs it in the demo (config/bridge.yaml with the sessions' bridge_overrides, the joint table's
limits, re-engaged from the episode's first command), the robot following the output exactly, under
three kinds of delivery:

- on time: each command 1 ms after its stamp;
- jittered: plus an exponential delay of mean 2 or 4 ms (order kept);
- late: 5 commands per episode (seeded) delivered 30, 50 or 80 ms late, those after them no earlier;
- on time, but 1 % of the limiter's ticks up to 0.9 of a tick late, the next one back on schedule
  (as the bridge's loop does after a late wake-up: a long tick, then a short one).

For each: the limiter's clips (velocity + acceleration joint-ticks), its `late_commands`, and the
joint-ticks where the interpolated reference itself exceeds the acceleration limit.

    python bench/bench_limiter_replay.py [--commands runs/demo/commands.npz] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from dit4dit_policy.config import section_params
from dit4dit_policy.demo import command_rates
from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.safety import CommandInterpolator, SafetyConfig, SafetyLimiter
from dit4dit_policy.sim_session import SessionSettings

TICK = 0.002
LATE_PER_EPISODE = 5
LATE_TICKS = 0.01


def episodes(path: Path) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]:
    with np.load(path) as data:
        names = [str(n) for n in data["joints"]]
        keys = sorted(k for k in data.files if k.startswith("stamps_"))
        runs = [(data[k], data["positions_" + k.removeprefix("stamps_")]) for k in keys]
    return names, [(t, q) for t, q in runs if t.size > 2]


def replay(table, config, names, stamps, positions, arrivals, late_ticks, rng) -> dict[str, int]:
    """One episode through a fresh limiter, a share `late_ticks` of its ticks late; the robot is
    where the limiter's output says."""
    rows = [table.index(n) for n in names]
    limiter = SafetyLimiter(table, config)
    interpolator = CommandInterpolator(len(names), max_interval=config.hold_after)  # the limiter's, for the arm
    interpolator.reset(positions[0])
    pose = table.column("default_position").copy()
    pose[rows] = positions[0]
    now = stamps[0]
    limiter.update_state(pose, np.zeros_like(pose), now)
    limiter.enable(now)
    amax = limiter.limits.max_acceleration[rows]
    k, reference, times, schedule = 0, [], [], now
    while now < arrivals[-1] + 0.2:
        schedule += TICK
        now = schedule + (rng.uniform(0.0, 0.9 * TICK) if rng.random() < late_ticks else 0.0)
        while k < stamps.size and arrivals[k] <= now:
            limiter.submit(names, positions[k], None, None, stamps[k], arrivals[k])
            interpolator.push(positions[k], arrivals[k], stamps[k])
            k += 1
        reference.append(interpolator.sample(now))  # what the limiter is asked to follow
        times.append(now)
        out, _ = limiter.step(now)
        limiter.update_state(np.array(out.q), np.zeros_like(pose), now)
    status = limiter.status(now)
    second = np.abs(command_rates(np.array(times), np.array(reference))[1])  # between the ticks' midpoints
    return {
        "clips": status.clamped["velocity"] + status.clamped["acceleration"],
        "late_commands": status.late_commands,
        "reference_beyond_acceleration": int(np.count_nonzero(second > amax)),
    }


def scenarios(stamps: np.ndarray, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, float]]:
    """Each delivery's arrival times, with the share of the limiter's ticks that come late."""
    on_time = stamps + 0.001
    out = {"on time": (on_time, 0.0)}
    for mean in (0.002, 0.004):
        out[f"jitter {mean * 1e3:.0f} ms"] = (np.maximum.accumulate(on_time + rng.exponential(mean, stamps.size)), 0.0)
    late = rng.choice(stamps.size - 1, size=min(LATE_PER_EPISODE, stamps.size - 1), replace=False) + 1
    for delay in (0.03, 0.05, 0.08):
        arrivals = on_time.copy()
        arrivals[late] += delay
        out[f"{LATE_PER_EPISODE} late by {delay * 1e3:.0f} ms"] = (np.maximum.accumulate(arrivals), 0.0)
    out[f"on time, {LATE_TICKS:.0%} of ticks late"] = (on_time, LATE_TICKS)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=Path, default=Path("runs/demo/commands.npz"), help="written by the demo")
    parser.add_argument("--seed", type=int, default=0, help="seed of the delivery delays")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if not args.commands.is_file():
        raise SystemExit(f"{args.commands} not found: run the demo first (bash scripts/demo.sh)")

    bridge = {**section_params("bridge.yaml", "safety_bridge"), **SessionSettings.load().bridge_overrides}
    table = load_joint_table(bridge["robot_variant"], bridge["joint_table"])
    config = SafetyConfig.from_params(bridge)
    names, runs = episodes(args.commands)
    rng = np.random.default_rng(args.seed)
    tick_rng = np.random.default_rng(args.seed + 1)  # its own: the deliveries' draws stay as they were
    totals: dict[str, dict[str, int]] = {}
    for stamps, positions in track(runs, description="replaying episodes"):
        for label, (arrivals, late_ticks) in scenarios(stamps, rng).items():
            counts = totals.setdefault(label, {})
            for key, n in replay(table, config, names, stamps, positions, arrivals, late_ticks, tick_rng).items():
                counts[key] = counts.get(key, 0) + n

    console = Console()
    table_out = Table(title=f"{len(runs)} episodes of {args.commands} through the safety limiter")
    table_out.add_column("delivery")
    for key in ("clips", "late_commands", "reference_beyond_acceleration"):
        table_out.add_column(key, justify="right")
    for label, counts in totals.items():
        table_out.add_row(label, *(str(counts[k]) for k in ("clips", "late_commands", "reference_beyond_acceleration")))
    console.print(table_out)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    console.print(machine)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "episodes": len(runs), "totals": totals}, indent=2))


if __name__ == "__main__":
    main()
