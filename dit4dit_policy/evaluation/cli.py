"""`dit4dit eval-bag`, `dit4dit replay-bag` and `dit4dit compare-replays`.

dit4dit eval-bag BAG_OR_FOLDER --checkpoint DIR --out DIR [--params policy.yaml] [--stride N] [--seed S] [--force]
dit4dit replay-bag EPISODE --checkpoint DIR --out DIR [--speed X] [--policy-set K=V ...] [--bridge-set K=V ...]
dit4dit compare-replays REPLAY_A REPLAY_B --out DIR [--force]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from dit4dit_policy.runtime.artifacts import PRECISIONS


def _assignments(items: list[str]) -> dict[str, Any]:
    """NAME=VALUE pairs, each value read as YAML the way `ros2 run ... -p NAME:=VALUE` reads it."""
    import yaml

    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected NAME=VALUE, got {item!r}")
        try:
            pairs[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"{item!r}: the value is not valid YAML: {e}") from e
        if pairs[key] is None:
            raise ValueError(f"{item!r} has no value (an empty string is {key}='')")
    return pairs


def _figures_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    table.add_column("")
    for column in ("mae", "rmse", "max_abs"):
        table.add_column(f"{column} (rad)", justify="right")
    for name, stats in rows.items():
        table.add_row(name, *(f"{stats[c]:.4f}" for c in ("mae", "rmse", "max_abs")))
    return table


def cmd_eval_bag(args: argparse.Namespace) -> int:
    from dit4dit_policy.evaluation.open_loop import NodeSettings, run_open_loop

    settings = NodeSettings.from_params_file(args.params).with_runtime(args.backend, args.device, args.precision)
    console = Console()
    with Progress(console=console) as bar:
        task = bar.add_task("open-loop inference", total=None)
        summary = run_open_loop(
            args.bag,
            args.checkpoint,
            args.out,
            settings,
            stride=args.stride,
            seed=args.seed,
            force=args.force,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    overall = summary["overall"]
    error = overall["error"]
    rows = {"all joints": error, **error["per_group"], **{f"  {k}": v for k, v in error["per_joint"].items()}}
    console.print(_figures_table(f"{overall['observations']} observations, {overall['episodes']} episode(s)", rows))
    latency = overall["latency"]
    console.print(
        f"inference p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms (first {latency['first_ms']:.1f} ms)"
    )
    console.print(f"wrote {args.out}")
    return 0


def cmd_replay_bag(args: argparse.Namespace) -> int:
    from dit4dit_policy.evaluation.replay import run_replay

    console = Console()
    with Progress(console=console) as bar:
        task = bar.add_task("closed-loop replay (starting the stack)", total=1.0)

        def progress(fraction: float) -> None:
            bar.update(task, completed=fraction, description="closed-loop replay")

        info = run_replay(
            args.episode,
            args.checkpoint,
            args.out,
            speed=args.speed,
            policy_set=_assignments(args.policy_set),
            bridge_set=_assignments(args.bridge_set),
            force=args.force,
            progress=progress,
        )
    status = info["policy_status"]
    console.print(
        f"{info['commands']} policy commands, {info['wire_samples']} wire samples; inference p50 "
        f"{status.get('inference_p50_ms', '?')} ms, p99 {status.get('inference_p99_ms', '?')} ms; "
        f"exit codes {info['exit_codes']}"
    )
    console.print(f"wrote {args.out}")
    return 0


def cmd_compare_replays(args: argparse.Namespace) -> int:
    from dit4dit_policy.evaluation.compare import run_compare

    result = run_compare(args.a, args.b, args.out, force=args.force)
    console = Console()
    for stream, figures in result["streams"].items():
        title = (
            f"{stream}: B - A on {figures['both']} of {figures['grid_points']} grid points "
            f"(only A {figures['only_a']}, only B {figures['only_b']})"
        )
        difference: dict[str, Any] | None = figures["difference"]
        if difference is None:
            console.print(f"{title}: no time where both replays commanded")
            continue
        rows = {"all joints": difference, **{f"  {k}": v for k, v in difference["per_joint"].items()}}
        console.print(_figures_table(title, rows))
    console.print(f"wrote {args.out}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval-bag",
        help="open-loop evaluation on recorded episodes: predicted chunks against recorded actions",
        description="Each recorded frame through the policy node's preprocessing and serving path; writes "
        "OUT/summary.json (errors per joint group, joint and chunk step, in radians; latency), "
        "OUT/predictions/*.npz and OUT/plots/*.png.",
    )
    p.add_argument("bag", type=Path, help="an episode folder (rosbag2) or a folder of episode_NNNNNN folders")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder (refused if it exists, unless --force)")
    p.add_argument("--params", default="policy.yaml", help="the policy node's parameter file (joints, topics, timing)")
    p.add_argument("--backend", help="default: the parameter file's")
    p.add_argument("--device", help="default: the parameter file's")
    p.add_argument("--precision", choices=PRECISIONS, help="default: the parameter file's")
    p.add_argument("--stride", type=int, default=1, help="evaluate every N-th usable frame")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler's noise")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(run=cmd_eval_bag)

    p = sub.add_parser(
        "replay-bag",
        help="closed-loop replay: play an episode's sensors into robot + bridge + policy node, record the commands",
        description="Starts the loopback robot, the safety bridge and the policy node, plays the episode's camera, "
        "joint states and instruction at recorded timing, and writes OUT/commands.npz (policy commands and the "
        "bridge's LowCmd_ targets on the recorded time axis), OUT/replay.json, OUT/replay.png and OUT/logs/.",
    )
    p.add_argument("episode", type=Path, help="an episode folder (rosbag2)")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder (refused if it exists, unless --force)")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--policy-set", nargs="*", default=[], metavar="NAME=VALUE", help="policy node parameters")
    p.add_argument("--bridge-set", nargs="*", default=[], metavar="NAME=VALUE", help="safety bridge parameters")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(run=cmd_replay_bag)

    p = sub.add_parser(
        "compare-replays",
        help="differences (per joint, radians) between two replays of one episode",
        description="Writes OUT/comparison.json and OUT/comparison.png.",
    )
    p.add_argument("a", type=Path, help="replay folder A (e.g. the old checkpoint)")
    p.add_argument("b", type=Path, help="replay folder B (e.g. the new checkpoint)")
    p.add_argument("--out", type=Path, required=True, help="output folder (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(run=cmd_compare_replays)
