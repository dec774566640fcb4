"""The motor process without ROS: commands through the pipe reach the robot clamped; losing the
parent damps the arms and hands them back before the process exits."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dit4dit_policy.bridge_process import BridgeProcess, BridgeSpec
from dit4dit_policy.g1 import LinkConfig
from dit4dit_policy.g1.loopback import LoopbackRobot
from dit4dit_policy.safety import EnableResult, SafetyConfig, Verdict

pytestmark = pytest.mark.slow

ELBOW = "right_elbow_joint"
ELBOW_SLOT = 25
WEIGHT_SLOT = 29


def spec(domain: int) -> BridgeSpec:
    return BridgeSpec(
        robot_variant="g1_29dof",
        joint_table="g1_29dof.yaml",
        safety=SafetyConfig(ramp_time=0.2),
        link=LinkConfig(domain_id=domain, weight_ramp_time=0.5),
        rate_hz=500.0,
        realtime_priority=0,
        exit_damping_time=0.3,
    )


def stream(bridge: BridgeProcess, position: float, seconds: float) -> list[Verdict]:
    verdicts, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        verdicts.append(bridge.command([ELBOW], np.array([position]), None, None, time.monotonic()))
        time.sleep(0.02)
    return verdicts


def test_when_commanded_through_the_pipe_expect_clamped_targets_at_the_robot(dds_domain, joint_table):
    upper = joint_table.joints[joint_table.index(ELBOW)].limits.max_position - joint_table.soft_margin
    with LoopbackRobot(domain_id=dds_domain) as robot:
        bridge = BridgeProcess(spec(dds_domain))
        try:
            assert bridge.activate(state_wait=5.0) is EnableResult.RAMPING
            verdicts = stream(bridge, 5.0, seconds=2.0)
            assert set(verdicts) == {Verdict.ACCEPTED}
            last = robot.last_arm_sdk
            assert last is not None and last.motor_cmd[ELBOW_SLOT].q == pytest.approx(upper, abs=1e-5)
            report = bridge.report()
            assert report["writing"] and report["status"]["state"] == "ACTIVE"
            assert report["latency"]["count"] > 50 and report["period"]["ticks"] > 500
            assert bridge.latest_sample().q.shape == (len(joint_table.names),)
            assert robot.dropped_bad_crc == 0
        finally:
            bridge.close()
        assert not bridge.alive


def test_when_the_parent_goes_away_expect_damping_and_weight_handed_back_before_exit(dds_domain):
    with LoopbackRobot(domain_id=dds_domain) as robot:
        bridge = BridgeProcess(spec(dds_domain))
        assert bridge.activate(state_wait=5.0) is EnableResult.RAMPING
        stream(bridge, 1.2, seconds=1.0)
        assert robot.last_arm_sdk.motor_cmd[ELBOW_SLOT].kp > 0
        assert robot.last_arm_sdk.motor_cmd[WEIGHT_SLOT].q > 0.9

        bridge._conn.close()  # what the child sees when the node process dies
        bridge._proc.join(10.0)
        assert bridge._proc.exitcode == 0
        last = robot.last_arm_sdk
        assert last.motor_cmd[ELBOW_SLOT].kp == 0.0 and last.motor_cmd[ELBOW_SLOT].kd > 0, "did not end in damping"
        assert last.motor_cmd[WEIGHT_SLOT].q == 0.0, "left the arms blended in"


def test_when_configuration_is_bad_expect_the_childs_error_in_the_parent(dds_domain):
    bad = BridgeSpec(**{**spec(dds_domain).__dict__, "robot_variant": "g1_99dof"})
    with pytest.raises(ValueError, match="g1_99dof"):
        BridgeProcess(bad)
