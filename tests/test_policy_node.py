"""The policy node as a real process: a tiny random-weight checkpoint, camera and joint states
published from this process; targets must stream at control rate, stop when an input goes stale,
and come back by themselves."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from dit4dit_policy.config import load_yaml
from dit4dit_policy.nodes.bridge_client import wait_for
from dit4dit_policy.runner import NodeSpec, ProcessGroup
from dit4dit_policy.runtime.bench import random_checkpoint

pytestmark = [pytest.mark.ros, pytest.mark.slow]

PARAMS = load_yaml("policy.yaml")["policy_node"]["ros__parameters"]
ARM = PARAMS["state_joints"]


class Robot:
    """Plays the camera and the joint-state publisher; records what the policy node sends."""

    def __init__(self, domain: int):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        node = self.node = rclpy.create_node("fake_robot", context=self.context)
        topics = PARAMS["topics"]
        self.image_pub = node.create_publisher(Image, topics["image"], qos_profile_sensor_data)
        self.joint_pub = node.create_publisher(JointState, topics["joint_states"], 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.instruction_pub = node.create_publisher(String, topics["instruction"], latched)
        self.commands: list[tuple[float, JointState]] = []
        self.chunks: list[JointTrajectory] = []
        self.status: list[DiagnosticStatus] = []
        node.create_subscription(
            JointState, topics["joint_command"], lambda m: self.commands.append((time.monotonic(), m)), 50
        )
        node.create_subscription(JointTrajectory, topics["action_chunk"], self.chunks.append, 10)
        node.create_subscription(DiagnosticStatus, topics["status"], self.status.append, 10)
        self.camera_on = True
        self._stop = threading.Event()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(node)
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._spin, self._publish)]
        for t in self._threads:
            t.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _publish(self) -> None:
        rng = np.random.default_rng(0)
        i = 0
        while not self._stop.is_set():
            stamp = self.node.get_clock().now().to_msg()
            joints = JointState(name=ARM + ["left_elbow_joint"], position=[0.1 * k for k in range(len(ARM) + 1)])
            joints.header.stamp = stamp
            self.joint_pub.publish(joints)
            if self.camera_on and i % 3 == 0:  # ~33 Hz camera, 100 Hz joints
                img = Image(height=48, width=64, encoding="rgb8", step=64 * 3)
                img.data = rng.integers(0, 255, 48 * 64 * 3, dtype=np.uint8).tobytes()
                img.header.stamp = stamp
                self.image_pub.publish(img)
            i += 1
            time.sleep(0.01)

    def last_state(self) -> str:
        return self.status[-1].message if self.status else ""

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def test_when_inputs_flow_expect_targets_at_control_rate_and_a_hold_when_the_camera_stops(tmp_path: Path):
    checkpoint = random_checkpoint("tiny", tmp_path / "ckpt")
    domain = random.randint(1, 100)
    robot = Robot(domain)
    spec = NodeSpec("policy_node", params_files=["policy.yaml"], overrides={"checkpoint": str(checkpoint)})
    with ProcessGroup(env={"ROS_DOMAIN_ID": str(domain)}, log_dir=tmp_path / "logs") as group:
        group.start("policy", spec)
        try:
            robot.instruction_pub.publish(String(data="touch the red block"))
            wait_for(lambda: len(robot.commands) > 100, 60, "joint targets from the policy node")
            group.check_alive()
            n0, t0 = len(robot.commands), time.monotonic()
            time.sleep(2.0)
            rate = (len(robot.commands) - n0) / (time.monotonic() - t0)
            assert 40 < rate < 60, f"targets at {rate:.1f} Hz, expected the 50 Hz control rate"
            last = robot.commands[-1][1]
            assert list(last.name) == ARM and np.all(np.isfinite(last.position))
            assert robot.chunks and len(robot.chunks[-1].points) == 8, "no 8-action chunk published"
            assert robot.last_state() == "publishing"

            robot.camera_on = False
            wait_for(lambda: robot.last_state() == "stale_frame", 5, "status saying the camera is stale")
            n_stopped = len(robot.commands)
            time.sleep(0.5)
            assert len(robot.commands) - n_stopped <= 1, "kept publishing on a stale camera"

            robot.camera_on = True
            wait_for(lambda: len(robot.commands) > n_stopped + 50, 20, "targets again once the camera is back")
        finally:
            robot.close()
        log = (group.log_dir / "policy.log").read_text()
        assert "instruction: 'touch the red block'" in log
        assert "not publishing: stale_frame" in log
