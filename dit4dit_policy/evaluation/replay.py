"""Closed-loop replay: a recorded episode's sensors played into the running stack, and what the
stack commands recorded, for regression tests of one checkpoint against another.

The loopback robot, the safety bridge (autostart) and the policy node run as processes
(`dit4dit_policy.runner`); once the bridge writes to the robot and the policy node is up, the
bag_player plays the episode's camera, joint states and instruction at recorded timing (times
`speed`). The bridge's own /joint_states are moved to BRIDGE_JOINT_STATES: the policy node sees the
recorded robot, as it saw the real one when the episode was recorded. This process records the
policy's commands to the bridge and the bridge's LowCmd_ targets on the robot's DDS topic, and maps
both onto the bag's recorded time axis with the player's status (replay_record.py).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from dit4dit_policy.config import load_yaml, section_params
from dit4dit_policy.data.bag_episode import BagEpisode, read_bag_episode
from dit4dit_policy.evaluation.playback import BagSource, Timeline
from dit4dit_policy.evaluation.replay_record import ReplayRecord, Stream
from dit4dit_policy.files import staged_folder
from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.nodes.bridge_client import wait_for
from dit4dit_policy.nodes.common import RosClient
from dit4dit_policy.runner import NodeSpec, ProcessGroup

BRIDGE_JOINT_STATES = "/replay/robot/joint_states"
WIRE_POLL_S = 0.01  # the wire stream's time resolution
TAIL_S = 0.5  # recording goes on this long after the bag ends: the policy stops on stale inputs
STARTUP_TIMEOUT_S = 120.0  # loading a checkpoint on a busy CPU takes a while
PLAYER_EXIT_S = 10.0
PLOT_FILE = "replay.png"


def _status_values(msg: DiagnosticStatus) -> dict[str, str]:
    return {"message": msg.message, **{kv.key: kv.value for kv in msg.values}}


class ReplayProbe(RosClient):
    """This process's view of a running stack (own rclpy context, executor thread): the policy's
    commands with arrival times, the policy's, the bridge's and the player's status, and, with a
    robot DDS domain, the LowCmd_ position targets of `wire_joints` on the robot's command topic."""

    def __init__(
        self,
        ros_domain: int,
        policy_topics: dict[str, str],
        player_status: str,
        safety_status: str | None = None,
        dds_domain: int | None = None,
        wire_topic: str = "rt/arm_sdk",
        wire_joints: tuple[str, ...] = (),
    ):
        super().__init__(ros_domain, "replay_probe")
        node = self.node
        self.commands: list[tuple[float, int, list[float]]] = []  # (arrival monotonic, stamp ns, positions)
        self.policy_status: dict[str, str] = {}
        self.safety_status: dict[str, str] = {}
        self.player_status: list[dict[str, Any]] = []
        self._command_sub = node.create_subscription(JointState, policy_topics["joint_command"], self._on_command, 50)
        node.create_subscription(
            DiagnosticStatus, policy_topics["status"], lambda m: setattr(self, "policy_status", _status_values(m)), 10
        )
        if safety_status is not None:
            node.create_subscription(
                DiagnosticStatus, safety_status, lambda m: setattr(self, "safety_status", _status_values(m)), 10
            )
        history = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)  # as the player keeps
        node.create_subscription(String, player_status, self._on_player, history)
        self.wire: list[tuple[int, np.ndarray]] = []  # (arrival wall-clock ns, targets of wire_joints)
        self._tap = None
        if dds_domain is not None:
            from dit4dit_policy.g1.tap import CommandTap

            table = load_joint_table()
            self._slots = [table.joints[table.index(n)].motor_index for n in wire_joints]
            self._tap = CommandTap(dds_domain, wire_topic)
        self.start_spinning(*([self._poll_wire] if self._tap is not None else []))

    def _on_command(self, msg: JointState) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.commands.append((time.monotonic(), stamp, list(msg.position)))

    def _on_player(self, msg: String) -> None:
        self.player_status.append(json.loads(msg.data))

    def hears_policy(self) -> bool:
        """Whether the policy node's command publisher is matched (commands sent now arrive here)."""
        return self._command_sub.get_publisher_count() > 0

    def player_state(self) -> str | None:
        return self.player_status[-1]["state"] if self.player_status else None

    def _poll_wire(self) -> None:
        # The last LowCmd_ of each poll stands for the poll's time; the tap's lists are emptied
        # each time so a long replay does not keep 500 messages a second.
        while not self.closing.wait(WIRE_POLL_S):
            samples = self._tap.poll()
            if samples:
                q = np.array([samples[-1].motor_cmd[s].q for s in self._slots])
                self.wire.append((time.time_ns(), q))
                self._tap.samples.clear()
                self._tap.arrivals.clear()

    def close(self) -> None:
        super().close()
        if self._tap is not None:
            self._tap.close()


def _parameters(file: str, section: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """A node's effective parameters: its YAML (nested sections flattened with dots) plus overrides."""
    return {**section_params(file, section), **overrides}


@dataclass(frozen=True)
class _Plan:
    """Everything a replay starts with, checked before any process starts."""

    episode: Path
    recording: BagEpisode
    timeline: Timeline
    span: float  # s of recorded time
    topics: list[str]  # played
    names: tuple[str, ...]  # the policy's action joints
    policy: dict[str, Any]  # effective parameters
    bridge: dict[str, Any]
    policy_set: dict[str, Any]  # overrides given to the nodes
    bridge_set: dict[str, Any]


def run_replay(
    episode: Path,
    checkpoint: Path,
    out: Path,
    *,
    speed: float = 1.0,
    policy_set: dict[str, Any] | None = None,
    bridge_set: dict[str, Any] | None = None,
    force: bool = False,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Replay `episode` against `checkpoint` in closed loop; write `out/` (commands.npz,
    replay.json, replay.png, logs/). Returns replay.json's content. `progress` gets the fraction of
    the bag played. `out` is written whole or not at all, and replaced only with `force`."""
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    plan = _plan(episode, checkpoint, speed, policy_set or {}, bridge_set or {})
    with staged_folder(out) as staging:
        logs = staging / "logs"
        try:
            probe, codes = _run_stack(plan, logs, progress)
        except TimeoutError as e:
            raise RuntimeError(f"{e}\n{_log_tails(logs)}") from e
        start = _start_stamp(probe)
        record = ReplayRecord(
            names=plan.names,
            command=_stream([(s, q) for _, s, q in probe.commands], start, plan),
            wire=_stream(probe.wire, start, plan),
            info={
                "episode": str(episode),
                "episode_name": plan.recording.name,
                "checkpoint": str(checkpoint),
                "speed": float(speed),
                "bag_span_s": plan.span,
                "time_axis": "recorded seconds since the bag's first message",
                "policy_overrides": {k: v for k, v in plan.policy_set.items() if k != "checkpoint"},
                "bridge_overrides": {k: v for k, v in plan.bridge_set.items() if k != "dds_domain"},
                "commands": len(probe.commands),
                "wire_samples": len(probe.wire),
                "player": probe.player_status[-1],
                "policy_status": probe.policy_status,
                "bridge_status": probe.safety_status,
                "exit_codes": codes,
            },
        )
        record.write(staging)
        _plot(record, plan, staging / PLOT_FILE)
    return record.info


def _plan(
    episode: Path, checkpoint: Path, speed: float, policy_set: dict[str, Any], bridge_set: dict[str, Any]
) -> _Plan:
    if not episode.exists():
        raise FileNotFoundError(f"{episode}: no such episode folder")
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint}: no such folder")
    policy_set = {"checkpoint": str(checkpoint.resolve()), **policy_set}
    bridge_set = {"autostart": True, "topics.joint_states": BRIDGE_JOINT_STATES, **bridge_set}
    policy = _parameters("policy.yaml", "policy_node", policy_set)
    recording = read_bag_episode(episode)  # the recorder's contract
    topics = [policy["topics.image"], policy["topics.joint_states"]]
    if recording.instructions:
        topics.append(policy["topics.instruction"])
    else:  # nothing to play on the instruction topic: the node starts with the episode's task
        policy_set["instruction"] = recording.tasks_at([0.0])[0]
    source = BagSource(episode, topics)
    return _Plan(
        episode=episode.resolve(),
        recording=recording,
        timeline=source.timeline(speed),
        span=(source.end - source.start) * 1e-9,
        topics=topics,
        names=tuple(policy["action_joints"]),
        policy=policy,
        bridge=_parameters("bridge.yaml", "safety_bridge", bridge_set),
        policy_set=policy_set,
        bridge_set=bridge_set,
    )


def _run_stack(plan: _Plan, logs: Path, progress: Callable[[float], None] | None) -> tuple[ReplayProbe, dict[str, int]]:
    """Run robot, bridge, policy node and player until the bag is played; the probe's recordings
    and every process's exit code."""
    ros_domain, dds_domain = random.randint(1, 100), random.randint(100, 232)
    bridge_set = {**plan.bridge_set, "dds_domain": dds_domain}
    env = {"ROS_DOMAIN_ID": str(ros_domain)}
    with ProcessGroup(env=env, log_dir=logs) as stack, ProcessGroup(env=env, log_dir=logs) as player:
        stack.start("robot", NodeSpec("loopback_robot", args=["--domain", str(dds_domain)]))
        stack.start("bridge", NodeSpec("safety_bridge", params_files=["bridge.yaml"], overrides=bridge_set))
        stack.start("policy", NodeSpec("policy_node", params_files=["policy.yaml"], overrides=plan.policy_set))
        probe = ReplayProbe(
            ros_domain,
            {"joint_command": plan.policy["topics.joint_command"], "status": plan.policy["topics.status"]},
            load_yaml("bag_player.yaml")["bag_player"]["ros__parameters"]["status_topic"],
            safety_status=plan.bridge["topics.safety_status"],
            dds_domain=dds_domain,
            wire_topic="rt/arm_sdk" if plan.bridge["control_mode"] == "arm_sdk" else "rt/lowcmd",
            wire_joints=plan.names,
        )
        try:
            _wait_alive(stack, lambda: bool(probe.wire), STARTUP_TIMEOUT_S, "the bridge's first LowCmd_")
            # Under load, matching the policy node's publisher can take seconds after it exists:
            # play only once every command it sends is recorded.
            _wait_alive(stack, probe.hears_policy, STARTUP_TIMEOUT_S, "the policy node's command publisher")
            player_set = {
                "bag": str(plan.episode),
                "topics": plan.topics,
                "speed": float(plan.timeline.speed),
                "loop": False,
                "wait_for_subscribers": STARTUP_TIMEOUT_S,
            }
            spec = NodeSpec("bag_player", params_files=["bag_player.yaml"], overrides=player_set)
            proc = player.start("player", spec)
            deadline = time.monotonic() + 2 * STARTUP_TIMEOUT_S + plan.span / plan.timeline.speed
            while probe.player_state() != "finished":
                stack.check_alive()
                if proc.poll() is not None or probe.player_state() == "failed":
                    time.sleep(1.0)  # its last status may still be on the way
                    if probe.player_state() != "finished":
                        raise RuntimeError(f"the bag player ended without finishing the bag\n{_log_tails(logs)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the replay of {plan.episode} did not finish in time")
                if progress is not None:
                    progress(_played_fraction(probe, plan.span))
                time.sleep(0.05)
            if progress is not None:
                progress(1.0)
            time.sleep(TAIL_S)
            stack.check_alive()
            proc.wait(PLAYER_EXIT_S)  # it exits by itself once its subscribers have the tail
        finally:
            probe.close()
        return probe, {**player.stop(), **stack.stop()}


def _plot(record: ReplayRecord, plan: _Plan, path: Path) -> None:
    from dit4dit_policy.evaluation import plots

    streams = {
        "policy command": (record.command.t, record.command.q),
        "bridge on wire": (record.wire.t, record.wire.q),
    }
    commands = plan.recording.commands
    if set(plan.names) <= set(commands.names):
        recorded_t = commands.stamps - plan.timeline.bag_start * 1e-9
        streams["recorded teleop command"] = (recorded_t, commands.select(plan.names))
    plots.replay_trajectories(streams, plan.names, f"{plan.recording.name}: closed-loop replay", path)


def _log_tails(logs: Path) -> str:
    """The ends of the player's and the policy node's logs, for an error message (the logs go with
    the unfinished output folder)."""
    parts = []
    for name in ("player", "policy"):
        log = logs / f"{name}.log"
        if log.exists():
            parts.append(f"--- end of {name}.log ---\n{log.read_text(errors='replace')[-1000:]}")
    return "\n".join(parts)


def _wait_alive(group: ProcessGroup, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    def ready() -> bool:
        group.check_alive()
        return predicate()

    wait_for(ready, timeout, what)


def _start_stamp(probe: ReplayProbe) -> int:
    for status in probe.player_status:
        if status.get("start_stamp_ns") is not None:
            return int(status["start_stamp_ns"])
    raise RuntimeError("the bag player never reported the start of playback")


def _played_fraction(probe: ReplayProbe, span: float) -> float:
    started = [s for s in probe.player_status if s.get("start_stamp_ns") is not None]
    if not started or span <= 0:
        return 0.0
    elapsed = (time.time_ns() - started[0]["start_stamp_ns"]) * 1e-9 * started[0]["speed"]
    return min(max(elapsed / span, 0.0), 1.0)


def _stream(samples: list[tuple[int, Any]], start_stamp: int, plan: _Plan) -> Stream:
    """Samples (wall-clock ns, positions) on the recorded time axis, in time order, from the start
    of playback to TAIL_S after its end: the same window in every replay of the episode, whatever
    the bridge did before or how long the processes took to stop."""
    joints = len(plan.names)
    t = np.array([plan.timeline.recorded_time(s, start_stamp) for s, _ in samples], dtype=np.float64)
    q = np.array([q for _, q in samples], dtype=np.float64).reshape(len(samples), joints)
    order = np.argsort(t, kind="stable")
    t, q = t[order], q[order]
    keep = (t >= 0.0) & (t <= plan.span + TAIL_S * plan.timeline.speed)
    return Stream(t[keep], q[keep])
