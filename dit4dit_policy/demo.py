"""The stack's main job on its embedded default: the simulated G1, the safety bridge and the policy
node serving the default checkpoint, for a number of randomised reach-and-touch episodes.

Everything runs as it would next to the robot: separate processes started from the parameter files
in config/ (what g1_sim.launch.py starts), the simulator speaking the G1's DDS protocol, the bridge
limiting every command. Prints the success rate with its 95 % interval, the inference latency,
control-loop and bridge figures and what the safety bridge had to do; writes a JSON report, a
contact sheet (PNG) of the first episode's camera frames and the policy's commands per episode
(commands.npz, replayed by bench/bench_limiter_replay.py).
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from PIL import Image as PILImage
from rich.console import Console
from rich.table import Table
from sensor_msgs.msg import Image, JointState

from dit4dit_policy.config import load_yaml, section_params
from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.nodes.bridge_client import BridgeClient, wait_for
from dit4dit_policy.nodes.common import stamp_seconds
from dit4dit_policy.nodes.policy_node import image_array
from dit4dit_policy.safety import LimitSnapshot
from dit4dit_policy.sim_session import SessionSettings, progress, running_stack

# Bridge states that mean it stopped following the policy: none may appear once episodes run.
INTERVENING_STATES = ("hold", "damping", "stopped", "estop", "fault")


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % score interval of a success rate (sound at 0 and n, unlike the normal approximation)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def command_rates(stamps: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite-difference velocity [N-1, J] and acceleration [N-2, J] of a command stream (stamps
    [N] s, positions [N, J]) at the stream's own rate."""
    t, q = np.asarray(stamps, np.float64), np.asarray(positions, np.float64)
    if t.ndim != 1 or q.ndim != 2 or q.shape[0] != t.size or np.any(np.diff(t) <= 0):
        raise ValueError("need strictly increasing stamps [N] and positions [N, J]")
    dt = np.diff(t)[:, None]
    v = np.diff(q, axis=0) / dt
    return v, np.diff(v, axis=0) / ((dt[1:] + dt[:-1]) / 2)


def beyond_limits(
    stamps: np.ndarray, positions: np.ndarray, max_velocity: np.ndarray, max_acceleration: np.ndarray
) -> dict[str, int]:
    """Joint-samples of a command stream whose velocity or acceleration (`command_rates`) exceeds
    the limits [J]: what the commands themselves ask beyond the robot's limits, as opposed to what
    the bridge clamps per 2 ms tick, which also counts its catching up after a command delivered
    late."""
    v, a = command_rates(stamps, positions)
    return {
        "velocity": int(np.count_nonzero(np.abs(v) > max_velocity)),
        "acceleration": int(np.count_nonzero(np.abs(a) > max_acceleration)),
    }


def acceleration_summary(streams: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """RMS and p99 of |acceleration| (rad/s^2) over every joint-sample of the command streams
    (`command_rates`): how rough the commands are long before any of them reaches a limit, so
    it separates two policies where the bridge's clamp counts, a few rare events, cannot."""
    a = [np.abs(command_rates(t, q)[1]).ravel() for t, q in streams]
    a = np.concatenate(a) if a else np.empty(0)
    if a.size == 0:
        return {"rms": math.nan, "p99": math.nan}
    return {"rms": float(np.sqrt(np.mean(a * a))), "p99": float(np.percentile(a, 99))}


def contact_sheet(frames: list[np.ndarray], columns: int, path: Path, scale: int = 2) -> Path:
    """Frames (HxWx3 RGB, one size) tiled left to right, top to bottom, scaled up by pixel repetition."""
    if not frames:
        raise ValueError("no camera frames to draw")
    h, w = frames[0].shape[:2]
    rows = math.ceil(len(frames) / columns)
    sheet = np.zeros((rows * h, min(columns, len(frames)) * w, 3), np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = frame
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), PILImage.NEAREST).save(path)
    return path


class Watcher:
    """What the demo reads off the ROS graph: policy status, bridge states, the first episode's frames."""

    def __init__(self, bridge: BridgeClient, every: int):
        self.policy: dict[str, str] = {}
        # Bridge states by phase: "start" (Stack.new_episode: scene reset, policy restart, bridge
        # re-engaged) and "episode" (the policy driving); None: not counted.
        self.states_seen: dict[str, dict[str, int]] = {"start": {}, "episode": {}}
        # Growth of the bridge's clamp and late-command counters by phase: each status's growth
        # since the previous one goes to the phase it arrived in (so it may belong to the ~0.1 s
        # before a change).
        self.grown: dict[str, dict[str, int]] = {"start": {}, "episode": {}}
        self._counts: dict[str, int] | None = None
        self.phase: str | None = None
        self.frames: list[np.ndarray] = []
        self.capture = False
        # The policy's commands of the current episode: (header stamp, positions in action_joints order).
        self.commands: list[tuple[float, list[float]]] = []
        self._every, self._count = every, 0
        self._lock = threading.Lock()
        topics = load_yaml("policy.yaml")["policy_node"]["ros__parameters"]["topics"]
        bridge.node.create_subscription(DiagnosticStatus, topics["status"], self._on_policy, 10)
        bridge.node.create_subscription(DiagnosticStatus, bridge.topics["safety_status"], self._on_bridge, 10)
        bridge.node.create_subscription(Image, topics["image"], self._on_image, 10)
        bridge.node.create_subscription(JointState, topics["joint_command"], self._on_command, 50)

    def _on_policy(self, msg: DiagnosticStatus) -> None:
        with self._lock:
            self.policy = {"message": msg.message, **{kv.key: kv.value for kv in msg.values}}

    def _on_bridge(self, msg: DiagnosticStatus) -> None:
        phase = self.phase
        counted = [kv for kv in msg.values if kv.key.startswith("clamped.") or kv.key == "late_commands"]
        counts = {kv.key: int(kv.value) for kv in counted}
        with self._lock:
            before, self._counts = self._counts, counts
            if phase is None:
                return
            seen = self.states_seen[phase]
            state = msg.message.lower()
            seen[state] = seen.get(state, 0) + 1
            if before is not None:
                grown = self.grown[phase]
                for key, n in counts.items():
                    grown[key] = grown.get(key, 0) + n - before.get(key, 0)

    def _on_command(self, msg: JointState) -> None:
        if self.phase is not None:  # from the episode's start: its first commands come before new_episode returns
            with self._lock:
                self.commands.append((stamp_seconds(msg.header.stamp), list(msg.position)))

    def take_commands(self, since: float) -> tuple[np.ndarray, np.ndarray]:
        """The commands since the last call stamped at or after `since` (s; earlier ones were on
        their way when the episode started), as (stamps, positions); one stamped no later than an
        earlier one (a repeat, or a clock step back) is dropped, so the stamps kept strictly increase."""
        with self._lock:
            commands, self.commands = self.commands, []
        stamps = np.array([c[0] for c in commands], dtype=np.float64)
        latest_before = np.maximum.accumulate(np.concatenate([[-np.inf], stamps]))[:-1]
        keep = np.flatnonzero((stamps > latest_before) & (stamps >= since))
        if keep.size == 0:
            return stamps[keep], np.empty((0, 0))
        return stamps[keep], np.array([commands[i][1] for i in keep])

    def _on_image(self, msg: Image) -> None:
        if self.capture:
            self._count += 1
            if self._count % self._every == 1:
                self.frames.append(image_array(msg)[0].copy())


def _number(values: dict[str, str], key: str) -> float:
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return math.nan


def run(out: Path, episodes: int, checkpoint: Path, console: Console) -> dict:
    settings = SessionSettings.load()
    cfg = settings.demo
    if not (checkpoint / "model.safetensors").is_file():
        raise FileNotFoundError(f"{checkpoint} is not a checkpoint folder (no model.safetensors)")
    started = time.monotonic()
    results = []
    # The limits the bridge enforces (velocity: the command ceiling, not the motors' own), for the
    # joints the policy commands, in its order.
    bridge_params = section_params("bridge.yaml", "safety_bridge")
    table = load_joint_table(bridge_params["robot_variant"], bridge_params["joint_table"])
    action_joints = section_params("policy.yaml", "policy_node")["action_joints"]
    rows = [table.index(n) for n in action_joints]
    enforced = LimitSnapshot.from_table(table)
    limits = (enforced.max_velocity[rows], enforced.max_acceleration[rows])
    beyond = {"velocity": 0, "acceleration": 0}
    streams: dict[str, np.ndarray] = {}  # the policy's commands per episode, for bench/bench_limiter_replay.py
    with running_stack("policy", settings, checkpoint=checkpoint) as stack:
        console.print(
            f"[bold]dit4dit_policy demo[/bold]: simulated G1 (DDS domain {stack.dds_domain}), safety bridge, policy "
            f"node with {checkpoint}; logs in {stack.logs}"
        )
        sim, bridge = stack.sim, stack.bridge
        watch = Watcher(bridge, int(cfg["contact_sheet_every"]))
        stack.wait_for_policy_command(-math.inf, 120.0, "the policy node's first commands")
        wait_for(
            lambda: bridge.last_status().get("state", "").lower() == "active", 60.0, "the bridge to follow the policy"
        )
        with progress(console) as bar:
            task = bar.add_task("policy episodes", total=episodes, note="")
            for k in range(episodes):
                stack.check()
                watch.phase = "start"
                stack.new_episode()
                watch.phase = "episode"
                watch.capture = k == 0
                touch = sim.wait_for_outcome(float(cfg["episode_timeout"]), until="success")
                # A touch is the task; the way home is given a while, and reported, but a policy
                # that hovers near home is not waited for until the timeout.
                outcome = sim.wait_for_outcome(float(cfg["return_timeout"])) if touch.success else touch
                watch.capture = False
                stamps, positions = watch.take_commands(stack.policy_restarted)
                streams[f"stamps_{k:03d}"], streams[f"positions_{k:03d}"] = stamps, positions
                for quantity, n in beyond_limits(stamps, positions, *limits).items():
                    beyond[quantity] += n
                results.append(
                    {
                        "episode": outcome.episode,
                        "success": outcome.success,
                        "back_home": outcome.done,
                        "touch_time": outcome.success_time,
                        "closest_m": round(min(touch.closest, outcome.closest), 4),
                        "wall_time": touch.waited + (outcome.waited if outcome is not touch else 0.0),
                    }
                )
                wins = sum(r["success"] for r in results)
                bar.update(task, advance=1, note=f"{wins}/{len(results)} touched")
            watch.phase = None
            time.sleep(0.5)  # one more status of each node, with the last episode in it
            policy, status = dict(watch.policy), bridge.last_status()
        stack.check()

    wins = sum(r["success"] for r in results)
    low, high = wilson_interval(wins, len(results))
    intervened = {s: n for s, n in watch.states_seen["episode"].items() if s in INTERVENING_STATES}
    at_starts = {s: n for s, n in watch.states_seen["start"].items() if s in INTERVENING_STATES}
    report = {
        "checkpoint": str(checkpoint),
        "episodes": len(results),
        "success_rate": wins / len(results),
        "success_rate_95ci": [low, high],
        "back_home_rate": sum(r["back_home"] for r in results) / len(results),
        "touch_time_mean_s": float(np.mean([r["touch_time"] for r in results if r["success"]] or [math.nan])),
        "policy": {k: policy.get(k) for k in sorted(policy)},
        "bridge": {k: status[k] for k in sorted(status) if not k.startswith("state_rejected")},
        "safety": {
            "clamps_during_episodes": {k: n for k, n in watch.grown["episode"].items() if k.startswith("clamped.")},
            "clamps_at_episode_starts": {k: n for k, n in watch.grown["start"].items() if k.startswith("clamped.")},
            # Commands that reached the bridge half an interval or more behind the policy's schedule.
            "late_commands_during_episodes": watch.grown["episode"].get("late_commands", 0),
            "policy_commands_beyond_limits": beyond,
            "policy_command_acceleration": acceleration_summary(
                [(streams[f"stamps_{k:03d}"], streams[f"positions_{k:03d}"]) for k in range(len(results))]
            ),
            "intervening_states_seen": intervened,
            "intervening_states_seen_at_episode_starts": at_starts,
        },
        "end_to_end_ms": {
            # camera frame stamp -> chunk in use at the policy tick, + bridge command -> LowCmd_ on the wire
            "p50": _number(policy, "frame_to_chunk_p50_ms") + _number(status, "command_to_wire_p50_ms"),
            "p99_bound": _number(policy, "frame_to_chunk_p99_ms") + _number(status, "command_to_wire_p99_ms"),
        },
        "wall_time_s": time.monotonic() - started,
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    if watch.frames:
        report["contact_sheet"] = str(
            contact_sheet(watch.frames, int(cfg["contact_sheet_columns"]), out / "episode_0.png")
        )
    np.savez_compressed(out / "commands.npz", joints=np.array(action_joints), **streams)
    report["commands"] = str(out / "commands.npz")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _print(report, console)
    console.print(f"report: {out / 'report.json'}")
    return report


def _print(report: dict, console: Console) -> None:
    policy, bridge = report["policy"], report["bridge"]
    low, high = report["success_rate_95ci"]
    table = Table(title=f"{report['episodes']} randomised episodes")
    table.add_column("")
    table.add_column("", justify="right")
    rows = [
        ("success rate (block touched)", f"{report['success_rate']:.0%}  (95 % CI {low:.0%}-{high:.0%})"),
        ("back home after the touch", f"{report['back_home_rate']:.0%}"),
        ("inference p50 / p99 (ms)", f"{policy.get('inference_p50_ms')} / {policy.get('inference_p99_ms')}"),
        (
            "camera frame -> chunk in use p50 / p99 (ms)",
            f"{policy.get('frame_to_chunk_p50_ms')} / {policy.get('frame_to_chunk_p99_ms')}",
        ),
        (
            "policy 50 Hz tick: period error p99 (ms), missed",
            f"{policy.get('control_period_error_p99_ms')}, {policy.get('control_missed_periods')}",
        ),
        (
            "bridge 500 Hz loop: period error p99 (ms), missed",
            f"{bridge.get('period_error_p99_ms')}, {bridge.get('missed_periods')}",
        ),
        (
            "bridge command -> wire p50 / p99 (ms)",
            f"{bridge.get('command_to_wire_p50_ms')} / {bridge.get('command_to_wire_p99_ms')}",
        ),
        ("bridge clamps during episodes (joint-ticks)", str(report["safety"]["clamps_during_episodes"])),
        ("... while episodes started", str(report["safety"]["clamps_at_episode_starts"])),
        ("commands late at the bridge (>= half an interval)", str(report["safety"]["late_commands_during_episodes"])),
        (
            "policy commands beyond the limits (at 50 Hz)",
            str(report["safety"]["policy_commands_beyond_limits"]),
        ),
        (
            "policy command acceleration rms / p99 (rad/s^2)",
            "{rms:.2f} / {p99:.1f}".format(**report["safety"]["policy_command_acceleration"]),
        ),
        ("bridge hold/damping/fault seen", str(report["safety"]["intervening_states_seen"] or "never")),
        (
            "... while episodes started (bridge stop, reset, policy restart)",
            str(report["safety"]["intervening_states_seen_at_episode_starts"] or "never"),
        ),
        ("wall time (s)", f"{report['wall_time_s']:.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def main() -> None:
    settings = SessionSettings.load()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=int(settings.demo["episodes"]))
    parser.add_argument("--checkpoint", type=Path, default=settings.checkpoint)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="report folder")
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    run(args.out, args.episodes, args.checkpoint, Console(width=110))


if __name__ == "__main__":
    main()
