"""The loopback robot: its LowState_ stream, its crude dynamics and its command-line program."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from dit4dit_policy.g1 import (
    G1Link,
    LinkConfig,
    LoopbackRobot,
    LowCmd_,
    LowState_,
    MotorTargets,
    lowcmd_crc,
    lowstate_crc,
)
from dit4dit_policy.g1.link import WRITER_QOS, join_domain, leave_domain
from dit4dit_policy.g1.robot_side import CommandMixer, MotorCommand
from dit4dit_policy.joint_table import load_joint_table

TIMEOUT = 5.0


@pytest.fixture
def robot(dds_domain) -> Iterator[LoopbackRobot]:
    with LoopbackRobot(dds_domain, "lo", rate_hz=500, mode_machine=random.randint(1, 255)) as r:
        yield r


@pytest.fixture
def peer(robot):
    """A raw participant on the robot's domain: (participant, writer factory)."""
    participant = join_domain(robot.domain_id, "lo")
    writers = {}

    def write(topic: str, cmd: LowCmd_) -> None:
        if topic not in writers:
            writers[topic] = DataWriter(participant, Topic(participant, topic, LowCmd_), qos=WRITER_QOS)
            deadline = time.monotonic() + TIMEOUT
            while writers[topic].get_publication_matched_status().current_count < 1:
                assert time.monotonic() < deadline, f"loopback robot never matched {topic}"
                time.sleep(0.005)
        cmd.crc = lowcmd_crc(cmd)
        writers[topic].write(cmd)

    yield participant, write
    leave_domain(robot.domain_id, participant)


def command(robot: LoopbackRobot, q, kp, kd, enabled=None, weight: float = 0.0) -> LowCmd_:
    cmd = LowCmd_(mode_machine=robot.mode_machine)
    for row, joint in enumerate(robot.table.joints):
        if enabled is None or enabled[row]:
            m = cmd.motor_cmd[joint.motor_index]
            m.mode, m.q, m.kp, m.kd = 1, float(q[row]), float(kp[row]), float(kd[row])
    cmd.motor_cmd[29].q = weight
    return cmd


def test_bad_arguments():
    with pytest.raises(ValueError, match="rate_hz"):
        LoopbackRobot(rate_hz=0)
    with pytest.raises(ValueError, match="mode_machine"):
        LoopbackRobot(mode_machine=256)
    with pytest.raises(ValueError, match="x y"):
        LoopbackRobot(network_interface="x y")
    with pytest.raises(ValueError, match="233"):
        LoopbackRobot(domain_id=233)


def test_publishes_valid_lowstate(robot, peer):
    participant, _ = peer
    reader = DataReader(participant, Topic(participant, "rt/lowstate", LowState_))
    states = []
    deadline = time.monotonic() + TIMEOUT
    while len(states) < 20 and time.monotonic() < deadline:
        states.append(reader.take_one(timeout=duration(seconds=TIMEOUT)))
    assert len(states) == 20
    table = robot.table
    for s in states:
        assert s.crc == lowstate_crc(s)
        assert s.mode_machine == robot.mode_machine
        assert s.imu_state.quaternion == [1.0, 0.0, 0.0, 0.0]
        assert s.imu_state.gyroscope == [0.0, 0.0, 0.0]
        assert s.imu_state.accelerometer[2] == pytest.approx(9.81)
        assert [s.motor_state[j.motor_index].mode for j in table.joints] == [1] * len(table.joints)
    ticks = [s.tick for s in states]
    assert all(b > a for a, b in zip(ticks, ticks[1:], strict=False))
    q = np.array([states[-1].motor_state[j.motor_index].q for j in table.joints])
    np.testing.assert_allclose(q, table.column("default_position"), atol=0.05)


def test_publish_rate(dds_domain):
    with LoopbackRobot(dds_domain, "lo", rate_hz=200) as robot:
        assert robot.wait_until(lambda r: r.stats().states_published >= 1, TIMEOUT)
        n0, t0 = robot.stats().states_published, time.monotonic()
        assert robot.wait_until(lambda r: r.stats().states_published >= n0 + 100, TIMEOUT)
        rate = 100 / (time.monotonic() - t0)
    assert 100 < rate < 260, f"{rate:.0f} Hz instead of 200"


def test_lowcmd_drives_joints_to_targets(robot, peer):
    _, write = peer
    table = robot.table
    kp = table.column("kp")
    kd = 2 * np.sqrt(kp)  # critically damped with unit inertia: settles in well under a second
    lo, hi = table.column("min_position") + 0.1, table.column("max_position") - 0.1
    target = np.clip(table.column("default_position") + 0.3, lo, hi)
    write("rt/lowcmd", command(robot, target, kp, kd))
    assert robot.wait_until(lambda r: np.abs(r.joint_positions() - target).max() < 0.02, TIMEOUT)
    assert robot.accepted_lowcmd == 1


def test_effort_is_clamped_to_max_effort(robot, peer):
    participant, write = peer
    table = robot.table
    n = len(table.names)
    far = table.column("max_position") - 0.05
    write("rt/lowcmd", command(robot, far, np.full(n, 1e4), np.zeros(n)))
    reader = DataReader(participant, Topic(participant, "rt/lowstate", LowState_))
    assert robot.wait_until(lambda r: r.accepted_lowcmd == 1, TIMEOUT)
    reader.take(256)  # drop states from before the command
    state = reader.take_one(timeout=duration(seconds=TIMEOUT))
    tau = np.array([state.motor_state[j.motor_index].tau_est for j in table.joints])
    max_effort = table.column("max_effort")
    assert (np.abs(tau) <= max_effort * (1 + 1e-6)).all()
    assert np.isclose(np.abs(tau), max_effort, rtol=1e-6).any()


def test_arm_sdk_blends_upper_body_by_weight(robot, peer):
    _, write = peer
    table = robot.table
    upper = np.array([j.group in ("waist", "arm") for j in table.joints])
    default = table.column("default_position")
    kp = table.column("kp")
    kd = 2 * np.sqrt(kp)
    target = np.clip(default + 0.4, table.column("min_position"), table.column("max_position"))
    write("rt/arm_sdk", command(robot, target, kp, kd, enabled=upper, weight=0.0))
    assert robot.wait_until(lambda r: r.accepted_arm_sdk == 1, TIMEOUT)
    # weight 0: the built-in hold keeps the default pose, whatever the arm targets say
    published = robot.stats().states_published
    assert robot.wait_until(lambda r: r.stats().states_published >= published + 100, TIMEOUT)
    np.testing.assert_allclose(robot.joint_positions(), default, atol=0.02)
    write("rt/arm_sdk", command(robot, target, kp, kd, enabled=upper, weight=1.0))
    assert robot.wait_until(
        lambda r: np.abs(r.joint_positions()[upper] - target[upper]).max() < 0.02, TIMEOUT
    )
    np.testing.assert_allclose(robot.joint_positions()[~upper], default[~upper], atol=0.02)
    assert robot.accepted_lowcmd == 0


def test_g1_package_never_imports_ros():
    code = (
        "import sys, dit4dit_policy.g1; "
        "bad = [m for m in sys.modules if m.split('.')[0].startswith(('rclpy', 'rosidl', 'rmw'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _program(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        # what the loopback_robot console script runs
        [
            sys.executable,
            "-c",
            "import sys; from dit4dit_policy.g1.loopback import main; sys.exit(main())",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_program_serves_a_link_in_another_process_and_exits_on_sigterm(dds_domain):
    proc = _program("--domain", str(dds_domain), "--interface", "lo", "--rate", "200", "--mode-machine", "42")
    try:
        table = load_joint_table()
        with G1Link(LinkConfig(domain_id=dds_domain, network_interface="lo", mode="lowcmd"), table) as link:
            assert link.wait_for_state(20.0), "no LowState_ from the loopback_robot process"
            assert link.latest_sample().mode_machine == 42
            for _ in range(20):
                link.send(MotorTargets.zeros(len(table.names), enabled=True))
                time.sleep(0.002)
        time.sleep(0.1)  # let the last datagrams land before asking the program to stop
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    accepted = re.search(r"accepted (\d+) rt/lowcmd", out)
    assert accepted and 1 <= int(accepted.group(1)) <= 20, out
    assert "dropped 0 with a bad CRC" in out


@pytest.mark.slow
def test_program_duration_and_bad_interface(dds_domain):
    proc = _program("--domain", str(dds_domain), "--duration", "0.3", "--rate", "100")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    published = re.search(r"published (\d+) LowState_", out)
    assert published and int(published.group(1)) > 0, out
    proc = _program("--domain", str(dds_domain), "--interface", "nosuch0")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "nosuch0" in err


def test_when_lowcmd_arrives_expect_it_to_drive_every_motor_from_then_on_whatever_arm_sdk_says(joint_table):
    """The robot-side arbitration the loopback robot and the simulator share (g1.robot_side.CommandMixer)."""
    n = len(joint_table.names)
    mixer = CommandMixer(joint_table)
    q, dq = np.zeros(n), np.zeros(n)
    hold = np.clip(joint_table.column("kp") * joint_table.column("default_position"), -mixer.max_effort,
                   mixer.max_effort)
    np.testing.assert_allclose(mixer.law.effort(q, dq), hold)
    assert (mixer.law.hold == 1).all()

    def cmd(tau: float, weight: float = 1.0) -> MotorCommand:
        z = np.zeros(n)
        return MotorCommand(np.ones(n, bool), z, z, np.full(n, tau), z, z, weight)

    mixer.arm_sdk(cmd(1.0))
    upper = np.array([j.group in ("waist", "arm") for j in joint_table.joints])
    np.testing.assert_allclose(mixer.law.effort(q, dq)[upper], 1.0)
    np.testing.assert_allclose(mixer.law.effort(q, dq)[~upper], hold[~upper])
    mixer.lowcmd(cmd(2.0))
    mixer.arm_sdk(cmd(3.0))  # debug mode: rt/lowcmd keeps the whole body
    np.testing.assert_allclose(mixer.law.effort(q, dq), 2.0)
    assert (mixer.law.hold == 0).all()
    mixer.clear()
    np.testing.assert_allclose(mixer.law.effort(q, dq), hold)
