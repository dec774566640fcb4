"""Benchmark the safety bridge at 500 Hz on this machine.

Runs the loopback robot and the bridge node as separate processes, streams 50 Hz arm commands on
the ROS topic for --seconds, and reports what the bridge measured of itself (period error of its
motor loop, command received -> LowCmd_ written), the bridge process's CPU use, its LowCmd_ rate,
and what the robot accepted.

    python bench/bench_bridge.py [--seconds 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from dit4dit_policy.nodes.bridge_client import BridgeClient, wait_for
from dit4dit_policy.runner import NodeSpec, ProcessGroup

ARM = ["right_shoulder_pitch_joint", "right_elbow_joint", "left_shoulder_pitch_joint", "left_elbow_joint"]
CENTER = [0.0, 0.9, 0.0, 0.9]


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live children (the bridge's motor process)."""
    pids = [pid] + [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    ticks = sum(int(_stat(p)[11]) + int(_stat(p)[12]) for p in pids)
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured streaming time")
    parser.add_argument("--rate", type=float, default=50.0, help="command rate of the simulated policy (Hz)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="bridge parameter overrides")
    args = parser.parse_args()

    dds_domain, ros_domain = random.randint(100, 232), random.randint(1, 100)
    logs = Path(tempfile.mkdtemp(prefix="bench_bridge_"))
    console = Console()
    with ProcessGroup(env={"ROS_DOMAIN_ID": str(ros_domain)}, log_dir=logs) as group:
        group.start("robot", NodeSpec("loopback_robot", args=["--domain", str(dds_domain)]))
        bridge = group.start(
            "bridge",
            NodeSpec(
                "safety_bridge",
                params_files=["bridge.yaml"],
                overrides={
                    "dds_domain": dds_domain,
                    "autostart": True,
                    "diagnostics_rate": 2.0,
                    **dict(kv.split("=", 1) for kv in args.set),
                },
            ),
        )
        client = BridgeClient(ros_domain)
        try:
            client.wait_for_bridge()
            wait_for(lambda: client.last_status().get("writing") == "True", 20, "the bridge writing LowCmd_")
            cpu0, wall0 = cpu_seconds(bridge.pid), time.monotonic()
            sent0 = int(client.last_status()["commands_sent"])
            period = 1.0 / args.rate
            for i in track(range(int(args.seconds * args.rate)), description="streaming 50 Hz commands"):
                phase = 2 * math.pi * 0.25 * i * period
                client.command(ARM, [c + 0.3 * math.sin(phase) for c in CENTER])
                time.sleep(max(0.0, wall0 + (i + 1) * period - time.monotonic()))
            cpu1, wall1 = cpu_seconds(bridge.pid), time.monotonic()
            status = client.last_status()
        finally:
            client.close()
        group.check_alive()
    robot = (logs / "robot.log").read_text().strip().splitlines()[-1]
    accepted = int(robot.split("rt/lowcmd and ")[1].split(" rt/arm_sdk")[0])
    dropped = int(robot.split("dropped ")[1].split(" with")[0])

    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "seconds": args.seconds,
        "safety_state": status.get("state"),
        "period_error_p50_ms": float(status["period_error_p50_ms"]),
        "period_error_p99_ms": float(status["period_error_p99_ms"]),
        "period_error_max_ms": float(status["period_error_max_ms"]),
        "missed_periods": int(status["missed_periods"]),
        "command_to_wire_p50_ms": float(status["command_to_wire_p50_ms"]),
        "command_to_wire_p99_ms": float(status["command_to_wire_p99_ms"]),
        "bridge_cpu_percent_of_one_core": 100.0 * (cpu1 - cpu0) / (wall1 - wall0),
        "lowcmd_rate_hz": (int(status["commands_sent"]) - sent0) / (wall1 - wall0),
        "robot_accepted": accepted,
        "robot_dropped_bad_crc": dropped,
    }
    table = Table(title="safety bridge at 500 Hz")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
