"""The scripted expert as a teleoperator: `ros2 run dit4dit_policy sim_expert` (parameters: config/expert.yaml).

Reads `topics.joint_states` (sensor_msgs/JointState, every joint of the G1, from the safety bridge)
and `topics.task` (the simulator's JSON task state: block position in the pelvis frame, whether it
was touched) and publishes, at rate_hz, `topics.command` (default /teleop/joint_command):
sensor_msgs/JointState with the 7 right-arm joint names and their position targets, stamped with
the node's clock. Run the safety bridge with topics.joint_command set to that topic; a recorder
records it as the action. The logic is dit4dit_policy.sim.expert.ReachExpert (no ROS).

Nothing is published while the joint states or the task state are missing or older (by arrival)
than max_state_age / max_task_age: the bridge then holds the arm, and damps if it lasts.
"""

from __future__ import annotations

import json
import time

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.nodes.common import spin_until_shutdown
from dit4dit_policy.nodes.params import declare_from_yaml
from dit4dit_policy.sim.expert import EXPERT_PARAMS_FILE, EXPERT_SECTION, ReachExpert, expert_config

NODE_NAME = EXPERT_SECTION
PARAMS_FILE = EXPERT_PARAMS_FILE


def parse_task(text: str) -> tuple[np.ndarray, bool, int]:
    """(block position in the pelvis frame, touched, episode) from a /sim/task JSON string."""
    try:
        task = json.loads(text)
        block = np.array(task["block"]["position_in_pelvis"], dtype=np.float64)
        touched, episode = task["success"], task["episode"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not a task state (need block.position_in_pelvis, success, episode): {e}") from e
    if block.shape != (3,) or not np.isfinite(block).all() or not isinstance(touched, bool):
        raise ValueError(f"task state with a bad block position {block.tolist()} or success {touched!r}")
    return block, touched, int(episode)


class ExpertNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        p = self.p = declare_from_yaml(self, PARAMS_FILE, NODE_NAME)
        for name in ("rate_hz", "max_state_age", "max_task_age"):
            if not p[name] > 0:
                raise ValueError(f"{name} must be > 0, got {p[name]!r}")
        config = expert_config(p)
        self.table = load_joint_table(p["robot_variant"], p["joint_table"])
        self.expert = ReachExpert(self.table, config)
        self._index = {name: i for i, name in enumerate(self.table.names)}
        self._q: np.ndarray | None = None
        self._q_time = -np.inf
        self._task: tuple[np.ndarray, bool, int] | None = None
        self._task_time = -np.inf
        self._episode = None
        self._pub = self.create_publisher(JointState, p["topics.command"], 10)
        self.create_subscription(JointState, p["topics.joint_states"], self._on_joints, 10)
        self.create_subscription(String, p["topics.task"], self._on_task, 10)
        self.create_timer(1.0 / p["rate_hz"], self._tick)
        self.get_logger().info(f"expert: {p['topics.joint_states']} + {p['topics.task']} -> {p['topics.command']}")

    def _on_joints(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            self.get_logger().warning("joint state with names and positions of different lengths",
                                      throttle_duration_sec=2.0)
            return
        q = np.full(len(self.table.names), np.nan)
        for name, pos in zip(msg.name, msg.position, strict=True):
            i = self._index.get(name)
            if i is not None:
                q[i] = pos
        if not np.isfinite(q).all():
            missing = [n for n, v in zip(self.table.names, q, strict=True) if not np.isfinite(v)]
            self.get_logger().warning(f"joint state without finite positions for {missing}", throttle_duration_sec=2.0)
            return
        self._q, self._q_time = q, time.monotonic()

    def _on_task(self, msg: String) -> None:
        try:
            self._task = parse_task(msg.data)
        except ValueError as e:
            self.get_logger().warning(str(e), throttle_duration_sec=2.0)
            return
        self._task_time = time.monotonic()
        episode = self._task[2]
        if episode != self._episode:
            self._episode = episode
            self.get_logger().info(f"episode {episode}: block at {self._task[0].round(3).tolist()} (pelvis)")

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._q_time > self.p["max_state_age"] or now - self._task_time > self.p["max_task_age"]:
            self.get_logger().warning("no fresh joint states or task state: not commanding", throttle_duration_sec=2.0)
            return
        block, touched, _ = self._task
        targets = self.expert.command(self._q, block, touched)
        msg = JointState(name=list(self.expert.joint_names), position=targets.tolist())
        msg.header.stamp = self.get_clock().now().to_msg()
        self._pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    try:
        node = ExpertNode()
    except (ValueError, KeyError, FileNotFoundError) as e:
        rclpy.logging.get_logger(NODE_NAME).error(f"cannot start: {e}")
        rclpy.try_shutdown()
        raise SystemExit(2) from e
    spin_until_shutdown(node, lambda: None)


if __name__ == "__main__":
    main()
