"""The policy node as a real process: a tiny random-weight checkpoint, camera and joint states
published from this process; targets must stream at control rate, stop when an input goes stale,
and come back by themselves."""

from __future__ import annotations

import random
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
