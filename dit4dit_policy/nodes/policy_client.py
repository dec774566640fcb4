"""Synthetic sensors for the policy node: a camera and joint-state publisher, plus recorders of
what the node sends. Used by the policy-node benchmark and tests where no robot or bag is at hand."""

from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from dit4dit_policy.config import load_yaml
from dit4dit_policy.nodes.common import RosClient


class SyntheticSensors(RosClient):
    """Publishes a noise camera (~33 Hz) and joint states (100 Hz) for `joints`; records the
    policy node's commands (with arrival time), chunks and status."""

    def __init__(self, domain_id: int, joints: list[str], image_size: tuple[int, int] = (48, 64)):
        topics = load_yaml("policy.yaml")["policy_node"]["ros__parameters"]["topics"]
        self.joints = joints
        self.image_size = image_size
        super().__init__(domain_id, "synthetic_sensors")
        node = self.node
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
        self.start_spinning(self._publish)

    def _publish(self) -> None:
        rng = np.random.default_rng(0)
        h, w = self.image_size
        i = 0
        while not self.closing.is_set():
            stamp = self.node.get_clock().now().to_msg()
            joints = JointState(name=list(self.joints), position=[0.1 * k for k in range(len(self.joints))])
            joints.header.stamp = stamp
            self.joint_pub.publish(joints)
            if self.camera_on and i % 3 == 0:
                img = Image(height=h, width=w, encoding="rgb8", step=w * 3)
                img.data = rng.integers(0, 255, h * w * 3, dtype=np.uint8).tobytes()
                img.header.stamp = stamp
                self.image_pub.publish(img)
            i += 1
            time.sleep(0.01)

    def instruct(self, text: str) -> None:
        self.instruction_pub.publish(String(data=text))

    def last_status(self) -> dict[str, str]:
        if not self.status:
            return {}
        latest = self.status[-1]
        return {"message": latest.message, **{kv.key: kv.value for kv in latest.values}}
