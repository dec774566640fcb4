"""Benchmark the policy node's control loop while inference runs in the background.

Starts the policy node on a random-weight checkpoint of a preset (or --checkpoint) with synthetic
camera (~33 Hz) and joint-state (100 Hz) inputs, or with a recorded episode (--bag) played in a
loop by the bag player at recorded timing, for --seconds, and reports the 50 Hz command stream as
the node measured it (period error of its tick thread, missed periods) and as a subscriber
received it, with the node's inference latency (and with --bag, how late the player published).

    python bench/bench_policy_node.py [--preset small] [--backend torch] [--seconds 60] [--json out.json]
        [--bag EPISODE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from dit4dit_policy.config import load_yaml
from dit4dit_policy.data.bag_episode import read_bag_episode
from dit4dit_policy.evaluation.playback import BagSource
from dit4dit_policy.evaluation.replay import ReplayProbe
from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.model.checkpoint import read_checkpoint_config
from dit4dit_policy.nodes.bridge_client import wait_for
from dit4dit_policy.nodes.policy_client import SyntheticSensors
from dit4dit_policy.runner import NodeSpec, ProcessGroup
from dit4dit_policy.runtime.bench import random_checkpoint
from dit4dit_policy.runtime.export import export


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="random-weight checkpoint of this preset")
    parser.add_argument("--checkpoint", type=Path, help="serve this checkpoint instead")
    parser.add_argument("--backend", default="torch", help="torch, torch-compiled, onnx or tensorrt")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--bag", type=Path, help="feed this recorded episode (looped) instead of synthetic inputs")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="policy node parameter overrides")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_policy_"))
    checkpoint = args.checkpoint or random_checkpoint(args.preset, work / "checkpoint")
    if args.backend in ("onnx", "tensorrt") and not (checkpoint / "export").exists():
        export(checkpoint, args.backend)
    cfg = read_checkpoint_config(checkpoint)
    # Any joints of the table serve for timing: the upper body first, as many as the model takes.
    upper = [j.name for j in load_joint_table().in_groups("arm", "waist")]
    state_joints, action_joints = upper[: cfg.state.joints], upper[: cfg.action.real_dim]
    domain = random.randint(1, 100)
    overrides = {
        "checkpoint": str(checkpoint),
        "backend": args.backend,
        "status_rate": 1.0,
        "state_joints": state_joints,
        "action_joints": action_joints,
        **dict(kv.split("=", 1) for kv in args.set),
    }
    topics = load_yaml("policy.yaml")["policy_node"]["ros__parameters"]["topics"]
    player_status = load_yaml("bag_player.yaml")["bag_player"]["ros__parameters"]["status_topic"]
    if args.bag:
        played = [topics["image"], topics["joint_states"]]
        if read_bag_episode(args.bag).instructions:
            played.append(topics["instruction"])
        BagSource(args.bag, played)  # a missing camera or joint-state topic is an error before anything starts
    with ProcessGroup(env={"ROS_DOMAIN_ID": str(domain)}, log_dir=work / "logs") as group:
        group.start("policy", NodeSpec("policy_node", params_files=["policy.yaml"], overrides=overrides))
        if args.bag:
            player = {"bag": str(args.bag.resolve()), "topics": played, "loop": True, "wait_for_subscribers": 120.0}
            group.start("player", NodeSpec("bag_player", params_files=["bag_player.yaml"], overrides=player))
            inputs = ReplayProbe(domain, topics, player_status)
        else:
            inputs = SyntheticSensors(domain, sorted(set(state_joints) | set(action_joints)))
        try:
            wait_for(lambda: len(inputs.commands) > 50, 120, "the policy node's first targets")
            start = len(inputs.commands)
            for _ in track(range(int(args.seconds)), description="50 Hz control while inference runs"):
                time.sleep(1.0)
            group.check_alive()
            arrivals = np.array([c[0] for c in inputs.commands[start:]])
            status = inputs.policy_status if args.bag else inputs.last_status()
            player_figures = inputs.player_status[-1] if args.bag else None
        finally:
            inputs.close()

    gaps = np.diff(arrivals)
    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "checkpoint": str(args.checkpoint) if args.checkpoint else f"random {args.preset}",
        "inputs": f"bag {args.bag} (looped)" if args.bag else "synthetic",
        "backend": args.backend,
        "seconds": args.seconds,
        "node_period_error_p99_ms": float(status["control_period_error_p99_ms"]),
        "node_missed_periods": int(status["control_missed_periods"]),
        "inference_p50_ms": float(status["inference_p50_ms"]),
        "inference_p99_ms": float(status["inference_p99_ms"]),
        "overruns": int(status["overruns"]),
        "commands_received": int(arrivals.size),
        "received_rate_hz": float(arrivals.size / (arrivals[-1] - arrivals[0])),
        "received_gap_p99_ms": float(np.percentile(gaps, 99) * 1e3),
        "received_gap_max_ms": float(gaps.max() * 1e3),
        "final_state": status["message"],
    }
    if player_figures is not None:
        figures["player_passes"] = player_figures["loop_pass"] + 1
        figures["player_lateness_p99_ms"] = player_figures["lateness_ms"]["p99"]
        figures["player_lateness_max_ms"] = player_figures["lateness_ms"]["max"]
    table = Table(title="policy node: 50 Hz command stream while inference runs")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
