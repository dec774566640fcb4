"""The simulated G1 on DDS, as the safety bridge's G1Link sees it: valid LowState_, arm_sdk executed,
bad CRCs dropped. Each test on a DDS domain of its own."""

from __future__ import annotations

import time

import numpy as np
import pytest
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic

from dit4dit_policy.g1 import G1Link, LinkConfig, LowCmd_, MotorTargets, lowcmd_crc
from dit4dit_policy.g1.link import WRITER_QOS, join_domain, leave_domain
from dit4dit_policy.sim.config import load_sim_configs
from dit4dit_policy.sim.physics import G1Sim
from dit4dit_policy.sim.simulator import SimulatedG1

pytestmark = pytest.mark.slow
TIMEOUT = 10.0
ELBOW = "right_elbow_joint"


@pytest.fixture
def snapshots() -> list:
    return []


@pytest.fixture
def robot(dds_domain, snapshots):
    # Ordinary scheduling: no real-time thread inside the test process.
    configs = load_sim_configs(realtime_priority=0)
    with SimulatedG1(G1Sim(*configs), dds_domain, "lo", on_snapshot=snapshots.append) as sim:
        yield sim


def test_when_a_link_connects_expect_valid_lowstate_and_arm_sdk_targets_followed(robot, snapshots, joint_table):
    cfg = LinkConfig(domain_id=robot.domain_id, network_interface="lo", mode="arm_sdk", weight_ramp_time=0.2)
    with G1Link(cfg, joint_table) as link:
        assert link.wait_for_state(TIMEOUT), "no LowState_ from the simulator"
        first = link.latest_sample()
        assert first.mode_machine == robot.mode_machine
        np.testing.assert_allclose(first.quaternion, [1, 0, 0, 0], atol=1e-6)  # the pelvis on its stand
        np.testing.assert_allclose(first.accelerometer, [0, 0, 9.81], atol=1e-3)
        np.testing.assert_allclose(first.q, robot.sim.home, atol=1e-3)
        n = len(joint_table.names)
        upper = np.array([j.group in ("waist", "arm") for j in joint_table.joints])
        target = first.q.copy()
        elbow = joint_table.index(ELBOW)
        target[elbow] += 0.4
        kp, kd = joint_table.column("kp") * 3, joint_table.column("kd") * 3  # stiff: small gravity sag
        targets = MotorTargets(q=target, dq=np.zeros(n), tau=np.zeros(n), kp=kp, kd=kd, enabled=upper)
        deadline = time.monotonic() + TIMEOUT
        while abs(link.latest_sample().q[elbow] - target[elbow]) > 0.03:
            assert time.monotonic() < deadline, f"elbow at {link.latest_sample().q[elbow]:.3f}, not {target[elbow]:.3f}"
            link.send(targets, arm_sdk_weight=1.0)
            time.sleep(0.01)
        last = link.latest_sample()
        assert last.tick > first.tick
        assert link.state_crc_errors == 0
        legs = np.array([j.group == "leg" for j in joint_table.joints])
        np.testing.assert_allclose(last.q[legs], robot.sim.home[legs], atol=1e-3)  # still on the built-in hold
    assert robot.accepted_arm_sdk > 0 and robot.dropped_bad_crc == 0
    assert len(snapshots) >= 3, "no camera snapshots while the simulation ran"
    times = [s.sim_time for s in snapshots]
    assert np.all(np.diff(times) > 0) and abs(np.median(np.diff(times)) - 1 / 30) < 1e-3


def test_when_a_command_has_a_bad_crc_on_the_wire_expect_it_dropped_and_counted(robot, joint_table):
    participant = join_domain(robot.domain_id, "lo")
    try:
        writer = DataWriter(participant, Topic(participant, "rt/lowcmd", LowCmd_), qos=WRITER_QOS)
        deadline = time.monotonic() + TIMEOUT
        while writer.get_publication_matched_status().current_count < 1:
            assert time.monotonic() < deadline, "the simulator never matched rt/lowcmd"
            time.sleep(0.01)
        cmd = LowCmd_(mode_machine=robot.mode_machine)
        for j in joint_table.joints:
            cmd.motor_cmd[j.motor_index].mode = 1  # limp all motors: the robot would fall if executed
        cmd.crc = lowcmd_crc(cmd) ^ 0x1
        writer.write(cmd)
        assert robot.wait_until(lambda r: r.dropped_bad_crc == 1, TIMEOUT)
        assert robot.accepted_lowcmd == 0
        time.sleep(0.2)
        np.testing.assert_allclose(robot.sim.reading().q, robot.sim.home, atol=1e-3)  # nothing went limp
    finally:
        leave_domain(robot.domain_id, participant)
