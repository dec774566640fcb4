"""A ROS client of the safety bridge: sends joint commands, watches joint states and safety status,
calls the bridge's services. Used by the demo, the benchmark and the node tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.duration import Duration
from sensor_msgs.msg import JointState

from dit4dit_policy.config import load_yaml
from dit4dit_policy.nodes.common import RosClient


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class BridgeClient(RosClient):
    def __init__(self, domain_id: int, params_file: str = "bridge.yaml", name: str = "bridge_client"):
        super().__init__(domain_id, name)
        topics = load_yaml(params_file)["safety_bridge"]["ros__parameters"]["topics"]
        self.topics = topics
        self._clients: dict[str, Any] = {}
        self._cmd_pub = self.node.create_publisher(JointState, topics["joint_command"], 10)
        self.joint_states: list[JointState] = []
        self.status: list[DiagnosticStatus] = []
        self.node.create_subscription(JointState, topics["joint_states"], self.joint_states.append, 10)
        self.node.create_subscription(DiagnosticStatus, topics["safety_status"], self.status.append, 10)
        self.start_spinning()

    def wait_for_bridge(self, timeout: float = 20.0) -> None:
        """Until the bridge subscribes our commands: anything sent before discovery is lost."""
        wait_for(lambda: self._cmd_pub.get_subscription_count() > 0, timeout, "the bridge's command subscription")

    def command(self, names: Sequence[str], positions: Sequence[float], stamp_offset: float = 0.0) -> None:
        """Publish position targets stamped now (+ `stamp_offset` s: negative sends a stale stamp)."""
        msg = JointState()
        msg.header.stamp = (self.node.get_clock().now() + Duration(nanoseconds=int(stamp_offset * 1e9))).to_msg()
        msg.name, msg.position = list(names), [float(p) for p in positions]
        self._cmd_pub.publish(msg)

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        # One client per service, kept: a new one must first discover the server (tens of ms or
        # more), which episode starts (sim_session.Stack.new_episode) cannot wait for.
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available after {timeout} s")
        future = client.call_async(request)
        wait_for(future.done, timeout, f"an answer from {name}")
        return future.result()

    def last_status(self) -> dict[str, str]:
        """The bridge's latest safety status as key -> value ({} before the first one)."""
        if not self.status:
            return {}
        latest = self.status[-1]
        return {"message": latest.message, **{kv.key: kv.value for kv in latest.values}}

    def joint_position(self, name: str) -> float:
        """Latest measured position of one joint from /joint_states (nan before the first)."""
        if not self.joint_states:
            return float("nan")
        latest = self.joint_states[-1]
        return latest.position[latest.name.index(name)]
