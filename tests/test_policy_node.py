"""The policy node as a real process: a tiny random-weight checkpoint, camera and joint states
published from this process; targets must stream at control rate, stop when an input goes stale,
and come back by themselves. In this process: which thread publishes what."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dit4dit_policy.config import load_yaml
from dit4dit_policy.nodes.bridge_client import wait_for
from dit4dit_policy.nodes.policy_client import SyntheticSensors
from dit4dit_policy.runner import NodeSpec, ProcessGroup
from dit4dit_policy.runtime.bench import random_checkpoint

pytestmark = [pytest.mark.ros, pytest.mark.slow]

PARAMS = load_yaml("policy.yaml")["policy_node"]["ros__parameters"]
ARM = PARAMS["state_joints"]


def test_when_inputs_flow_expect_targets_at_control_rate_and_a_hold_when_the_camera_stops(tmp_path: Path):
    checkpoint = random_checkpoint("tiny", tmp_path / "ckpt")
    domain = random.randint(1, 100)
    robot = SyntheticSensors(domain, ARM + ["left_elbow_joint"])
    spec = NodeSpec("policy_node", params_files=["policy.yaml"], overrides={"checkpoint": str(checkpoint)})
    with ProcessGroup(env={"ROS_DOMAIN_ID": str(domain)}, log_dir=tmp_path / "logs") as group:
        group.start("policy", spec)
        try:
            robot.instruct("touch the red block")
            wait_for(lambda: len(robot.commands) > 100, 60, "joint targets from the policy node")
            group.check_alive()
            n0, t0 = len(robot.commands), time.monotonic()
            time.sleep(2.0)
            rate = (len(robot.commands) - n0) / (time.monotonic() - t0)
            assert 40 < rate < 60, f"targets at {rate:.1f} Hz, expected the 50 Hz control rate"
            last = robot.commands[-1][1]
            assert list(last.name) == ARM and np.all(np.isfinite(last.position))
            assert robot.chunks and len(robot.chunks[-1].points) == 8, "no 8-action chunk published"
            assert robot.last_status().get("message") == "publishing"

            robot.camera_on = False
            wait_for(lambda: robot.last_status().get("message") == "stale_frame", 5, "status: camera stale")
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


@pytest.mark.usefixtures("torch_one_thread")
def test_when_chunks_are_inferred_expect_the_executor_to_publish_them_and_the_tick_only_commands(
    tmp_path: Path, dds_domain: int, monkeypatch
):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image, JointState

    from dit4dit_policy.nodes.policy_node import PolicyNode

    checkpoint = random_checkpoint("tiny", tmp_path / "ckpt")
    args = ["--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "realtime_priority:=0"]
    rclpy.init(args=args, domain_id=dds_domain)
    try:
        node = PolicyNode()
        published: dict[str, list[tuple[str, object]]] = {"chunk": [], "command": []}
        for kind, publisher in (("chunk", node._chunk_pub), ("command", node._cmd_pub)):
            monkeypatch.setattr(
                publisher,
                "publish",
                lambda msg, kind=kind: published[kind].append((threading.current_thread().name, msg)),
            )
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        node.start()
        try:
            h, w = 48, 64
            deadline = time.monotonic() + 60
            while len(published["chunk"]) < 3 and time.monotonic() < deadline:
                # What the subscriptions would hand the node: a camera frame and joint states, same stamp.
                stamp = node.get_clock().now().to_msg()
                joints = JointState(name=ARM, position=[0.0] * len(ARM))
                joints.header.stamp = stamp
                node._on_joints(joints)
                image = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=bytes(h * w * 3))
                image.header.stamp = stamp
                node._on_image(image)
                executor.spin_once(timeout_sec=0.03)
        finally:
            node.stop()
            executor.shutdown()
            node.destroy_node()
    finally:
        rclpy.shutdown()
    assert len(published["chunk"]) >= 3, "fewer than 3 chunks published within 60 s"
    assert {thread for thread, _ in published["chunk"]} == {threading.current_thread().name}
    assert published["command"] and {thread for thread, _ in published["command"]} == {"policy-tick"}
    chunk = published["chunk"][-1][1]
    assert list(chunk.joint_names) == ARM and len(chunk.points) == 8
