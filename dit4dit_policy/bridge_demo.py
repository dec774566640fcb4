"""The safety bridge against the loopback G1, step by step (`python -m dit4dit_policy.bridge_demo`).

Starts the loopback robot and the bridge node as separate processes (the same executables and
parameter files `ros2 launch` would use), then plays a policy: a smooth arm motion, hostile
commands, silence (watchdog), an e-stop and a reset. Prints what the bridge accepted, rejected
and clamped, what reached the wire, and what the robot received; writes a JSON report.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from std_srvs.srv import Trigger

from dit4dit_policy.g1 import lowcmd_crc
from dit4dit_policy.g1.tap import CommandTap
from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.nodes.bridge_client import BridgeClient, wait_for
from dit4dit_policy.runner import NodeSpec, ProcessGroup

ARM = ["right_shoulder_pitch_joint", "right_shoulder_roll_joint", "right_elbow_joint"]
ELBOW_SLOT = 25
WEIGHT_SLOT = 29


def _stream(client: BridgeClient, tap: CommandTap, seconds: float, target, rate: float = 50.0) -> None:
    start = time.monotonic()
    i = 0
    while (t := time.monotonic() - start) < seconds:
        client.command(ARM, target(t))
        i += 1
        if i % 5 == 0:
            tap.poll()  # decoding is slow in Python: keep up rather than drain thousands later
        time.sleep(max(0.0, start + i / rate - time.monotonic()))


def _state(client: BridgeClient) -> str:
    return client.last_status().get("state", "?")


def run(report_path: Path, console: Console) -> dict:
    table = load_joint_table()
    elbow_max = table.joints[table.index("right_elbow_joint")].limits.max_position - table.soft_margin
    dds_domain, ros_domain = random.randint(100, 232), random.randint(1, 100)
    logs = Path(tempfile.mkdtemp(prefix="dit4dit_demo_"))
    timeline: list[tuple[str, str]] = []

    def note(event: str, state: str) -> None:
        timeline.append((event, state))
        console.print(f"  {event:<58} bridge state: [bold]{state}[/bold]")

    console.print(f"[bold]dit4dit_policy demo[/bold]: loopback G1 on DDS domain {dds_domain}, logs in {logs}")
    with ProcessGroup(env={"ROS_DOMAIN_ID": str(ros_domain)}, log_dir=logs) as group:
        group.start("robot", NodeSpec("loopback_robot", args=["--domain", str(dds_domain)]))
        group.start(
            "bridge",
            NodeSpec(
                "safety_bridge",
                params_files=["bridge.yaml"],
                overrides={"dds_domain": dds_domain, "autostart": True, "diagnostics_rate": 10.0},
            ),
        )
        client, tap = BridgeClient(ros_domain, name="demo_policy"), CommandTap(dds_domain)
        try:
            client.wait_for_bridge()
            wait_for(lambda: len(tap.poll()) > 0 and client.status, 20, "the bridge's first LowCmd_")
            note("bridge activated (no policy yet: ramp, then hold and damp)", _state(client))

            _stream(client, tap, 4.0, lambda t: [0.3 * math.sin(1.5 * t), -0.2, 0.9 + 0.4 * math.sin(1.5 * t)])
            note("4 s of smooth arm motion at 50 Hz", _state(client))

            client.command(ARM, [0.0, -0.2, math.nan])
            client.command(["right_elbow_joint", "tail_joint"], [0.9, 0.0])
            client.command(["left_knee_joint"], [0.5])  # legs belong to the robot in arm_sdk mode
            client.command(ARM, [0.0, -0.2, 0.9], stamp_offset=-5.0)
            time.sleep(0.3)
            note("NaN, unknown joint, leg, stale stamp: each rejected whole", _state(client))

            _stream(client, tap, 2.0, lambda t: [0.0, -0.2, 5.0])
            elbow_on_wire = max(s.motor_cmd[ELBOW_SLOT].q for s in tap.poll())
            note(f"elbow asked for 5.0 rad: at most {elbow_on_wire:.3f} on the wire", _state(client))

            time.sleep(0.25)
            note("policy silent for 0.25 s", _state(client))
            time.sleep(0.6)
            note("policy silent for 0.85 s", _state(client))

            _stream(client, tap, 1.0, lambda t: [0.0, -0.2, 1.2])
            client.call(Trigger, "/dit4dit/estop", Trigger.Request())
            _stream(client, tap, 0.5, lambda t: [0.0, -0.2, 1.2])
            note("e-stop (commands still coming)", _state(client))
            client.call(Trigger, "/dit4dit/reset", Trigger.Request())
            _stream(client, tap, 1.0, lambda t: [0.0, -0.2, 1.0])
            note("reset: ramping again from the measured pose", _state(client))
            status = client.last_status()
            samples = tap.poll()
        finally:
            client.close()
            tap.close()
        group.check_alive()
        codes = group.stop()
    robot_summary = (logs / "robot.log").read_text().strip().splitlines()[-1]

    report = {
        "timeline": timeline,
        "bridge": {k: status[k] for k in sorted(status) if not k.startswith("state_rejected")},
        "wire": {
            "lowcmd_written_seen": len(samples),
            "crc_valid": sum(lowcmd_crc(s) == s.crc for s in samples),
            "elbow_max_on_wire": max(s.motor_cmd[ELBOW_SLOT].q for s in samples),
            "elbow_soft_limit": elbow_max,
            "max_weight_step": float(np.max(np.abs(np.diff([s.motor_cmd[WEIGHT_SLOT].q for s in samples])))),
        },
        "robot": robot_summary,
        "exit_codes": codes,
    }
    summary = Table(title="what happened")
    summary.add_column("")
    summary.add_column("", justify="right")
    for key in (
        "accepted",
        "rejected.rejected_nonfinite",
        "rejected.rejected_unknown_joint",
        "rejected.rejected_not_controllable",
        "rejected.rejected_stale_stamp",
        "rejected.rejected_latched",
        "clamped.position",
        "clamped.velocity",
        "command_to_wire_p99_ms",
        "period_error_p99_ms",
    ):
        summary.add_row(f"bridge {key}", status.get(key, "-"))
    for key, value in report["wire"].items():
        summary.add_row(f"wire {key}", f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(summary)
    console.print(robot_summary)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2))
    console.print(f"report: {report_path}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, default=Path("runs/bridge_demo/report.json"), help="JSON report path")
    args = parser.parse_args()
    report = run(args.report, Console(width=110))
    wire = report["wire"]
    ok = wire["crc_valid"] == wire["lowcmd_written_seen"] and wire["elbow_max_on_wire"] <= wire["elbow_soft_limit"]
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
