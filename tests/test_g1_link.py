"""G1Link against the loopback robot and raw cyclonedds peers, each test on its own DDS domain."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Iterator

import numpy as np
import pytest
from cyclonedds.domain import DomainParticipant
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
    NoLowStateError,
    cyclone_config_xml,
    lowcmd_crc,
    lowstate_crc,
    state_sample,
)
from dit4dit_policy.g1.link import MAX_RAMP_DT, WRITER_QOS, join_domain, leave_domain
from dit4dit_policy.joint_table import load_joint_table

TIMEOUT = 5.0


def wait_for(condition, timeout: float = TIMEOUT) -> bool:
    """Poll a condition every 5 ms, for at most timeout s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def robot(dds_domain) -> Iterator[LoopbackRobot]:
    with LoopbackRobot(dds_domain, "lo", mode_machine=random.randint(1, 255)) as r:
        yield r


@pytest.fixture
def link(robot) -> Iterator[G1Link]:
    with G1Link(LinkConfig(domain_id=robot.domain_id, network_interface="lo", mode="lowcmd")) as lk:
        assert lk.wait_for_state(TIMEOUT)
        yield lk


@pytest.fixture
def arm_link(robot) -> Iterator[G1Link]:
    cfg = LinkConfig(domain_id=robot.domain_id, network_interface="lo", mode="arm_sdk", weight_ramp_time=2.0)
    with G1Link(cfg) as lk:
        assert lk.wait_for_state(TIMEOUT)
        yield lk


def random_targets(table, rng: np.random.Generator) -> MotorTargets:
    n = len(table.names)
    lo, hi = table.column("min_position"), table.column("max_position")
    return MotorTargets(
        q=rng.uniform(lo, hi),
        dq=rng.uniform(-1, 1, n),
        tau=rng.uniform(-2, 2, n),
        kp=rng.uniform(0, 100, n),
        kd=rng.uniform(0, 3, n),
        enabled=rng.random(n) < 0.8,
    )


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "lowcmdd"}, "lowcmdd"),
        ({"domain_id": -1}, "-1"),
        ({"domain_id": 233}, "233"),
        ({"domain_id": True}, "True"),
        ({"domain_id": "0"}, "'0'"),
        ({"network_interface": "eth0; rm"}, "eth0; rm"),
        ({"network_interface": "a_very_long_interface"}, "a_very_long_interface"),
        ({"network_interface": "::1"}, "IPv4"),
        ({"weight_ramp_time": 0.0}, "weight_ramp_time"),
        ({"weight_ramp_time": math.nan}, "weight_ramp_time"),
        ({"weight_ramp_time": math.inf}, "weight_ramp_time"),
    ],
)
def test_bad_config_is_a_value_error_naming_it(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LinkConfig(**kwargs)


def test_good_configs():
    cfg = LinkConfig()
    assert (cfg.domain_id, cfg.network_interface, cfg.mode, cfg.weight_ramp_time) == (0, "", "arm_sdk", 2.0)
    assert cfg.command_topic == "rt/arm_sdk"
    assert LinkConfig(mode="lowcmd", network_interface="enp2s0", domain_id=232).command_topic == "rt/lowcmd"
    assert LinkConfig(network_interface="192.168.123.99").network_interface == "192.168.123.99"


def test_cyclone_config_xml():
    assert cyclone_config_xml("") is None
    lo = cyclone_config_xml("lo")
    assert 'NetworkInterface name="lo"' in lo and 'Peer address="127.0.0.1"' in lo
    eth = cyclone_config_xml("eth0")
    assert 'NetworkInterface name="eth0"' in eth and "Peer" not in eth
    ip = cyclone_config_xml("192.168.123.99")
    assert 'NetworkInterface address="192.168.123.99"' in ip and "Peer" not in ip
    assert "Peer" in cyclone_config_xml("127.0.0.1")
    with pytest.raises(ValueError, match="</x>"):
        cyclone_config_xml("</x>")


def test_unknown_interface_is_a_clear_error(dds_domain):
    link = G1Link(LinkConfig(domain_id=dds_domain, network_interface="nosuch0"))
    with pytest.raises(ValueError, match="nosuch0.*available"):
        link.connect()
    assert not link.connected


def test_one_interface_per_domain_per_process(dds_domain):
    with G1Link(LinkConfig(domain_id=dds_domain, network_interface="lo")):
        with pytest.raises(ValueError, match=f"domain {dds_domain}.*'lo'"):
            G1Link(LinkConfig(domain_id=dds_domain, network_interface="")).connect()
        with G1Link(LinkConfig(domain_id=dds_domain, network_interface="lo")) as second:
            assert second.connected
    # once every user has left, the domain can be joined with another config
    with G1Link(LinkConfig(domain_id=dds_domain, network_interface="")) as default:
        assert default.connected


def test_arm_sdk_mode_rejects_a_table_using_the_weight_slot():
    table = load_joint_table()
    from dataclasses import replace

    moved = replace(table, joints=(*table.joints[:-1], replace(table.joints[-1], motor_index=29)))
    with pytest.raises(ValueError, match="slot 29"):
        G1Link(LinkConfig(mode="arm_sdk"), moved)
    assert G1Link(LinkConfig(mode="lowcmd"), moved).table is moved


# --- commands --------------------------------------------------------------------------------


def test_send_refuses_without_connection_or_state(dds_domain):
    table = load_joint_table()
    link = G1Link(LinkConfig(domain_id=dds_domain, network_interface="lo", mode="lowcmd"), table)
    targets = MotorTargets.zeros(len(table.names))
    with pytest.raises(RuntimeError, match="not connected"):
        link.send(targets)
    with link:
        with pytest.raises(NoLowStateError, match="mode_machine"):
            link.send(targets)
        assert link.latest_state() is None and link.latest_sample() is None
        assert link.commands_sent == 0


def test_lowcmd_round_trip(robot, link):
    rng = np.random.default_rng(random.getrandbits(32))
    table = link.table
    targets = random_targets(table, rng)
    targets.enabled[3] = False
    sent = link.send(targets)
    assert robot.wait_until(lambda r: r.accepted_lowcmd == 1, TIMEOUT)
    received = robot.last_lowcmd
    assert received == sent
    assert received.mode_machine == robot.mode_machine
    assert received.crc == lowcmd_crc(received)
    assert robot.dropped_bad_crc == 0
    for row, joint in enumerate(table.joints):
        m = received.motor_cmd[joint.motor_index]
        if targets.enabled[row]:
            assert m.mode == 1
            got = [m.q, m.dq, m.tau, m.kp, m.kd]
            want = [targets.q[row], targets.dq[row], targets.tau[row], targets.kp[row], targets.kd[row]]
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        else:
            assert (m.mode, m.q, m.dq, m.tau, m.kp, m.kd) == (0, 0, 0, 0, 0, 0)
    for slot in range(29, 35):
        assert received.motor_cmd[slot] == received.motor_cmd[slot].__class__()
    assert link.commands_sent == 1


def test_raw_reader_sees_the_robot_type_name(robot, link):
    participant = DomainParticipant(robot.domain_id)  # joins the same, already configured domain
    reader = DataReader(participant, Topic(participant, "rt/lowcmd", LowCmd_))
    assert wait_for(lambda: link.matched_readers() >= 2)  # the robot and this reader
    table = link.table
    sent = link.send(MotorTargets.zeros(len(table.names), enabled=True))
    got = reader.take_one(timeout=duration(seconds=TIMEOUT))
    assert got == sent
    # what the link's writer announces in discovery (the only writer on rt/lowcmd here)
    (handle,) = reader.get_matched_publications()
    endpoint = reader.get_matched_publication_data(handle)
    assert (endpoint.topic_name, endpoint.type_name) == ("rt/lowcmd", "unitree_hg::msg::dds_::LowCmd_")


def test_corrupted_crc_is_dropped_and_counted(robot, link):
    participant = join_domain(robot.domain_id, "lo")
    try:
        writer = DataWriter(participant, Topic(participant, "rt/lowcmd", LowCmd_), qos=WRITER_QOS)
        assert wait_for(lambda: writer.get_publication_matched_status().current_count >= 1)
        cmd = LowCmd_(mode_machine=robot.mode_machine)
        cmd.motor_cmd[0].mode = 1
        cmd.motor_cmd[0].kp = 10.0
        cmd.crc = lowcmd_crc(cmd) ^ 0x1
        writer.write(cmd)
        assert robot.wait_until(lambda r: r.dropped_bad_crc == 1, TIMEOUT)
        assert robot.accepted_lowcmd == 0 and robot.last_lowcmd is None
        cmd.crc = lowcmd_crc(cmd)
        writer.write(cmd)
        assert robot.wait_until(lambda r: r.accepted_lowcmd == 1, TIMEOUT)
        assert robot.last_lowcmd == cmd and robot.dropped_bad_crc == 1
    finally:
        leave_domain(robot.domain_id, participant)


def test_bad_targets_are_value_errors_naming_the_problem(link):
    table = link.table
    n = len(table.names)
    t = dataclasses.replace(MotorTargets.zeros(n, enabled=True), q=np.zeros(n - 1))
    with pytest.raises(ValueError, match=r"MotorTargets.q has shape \(28,\)"):
        link.send(t)
    t = MotorTargets.zeros(n, enabled=True)
    t.dq[5] = np.nan
    with pytest.raises(ValueError, match=f"dq is not finite for {table.names[5]}"):
        link.send(t)
    t = MotorTargets.zeros(n, enabled=True)
    t.kd[2] = -1.0
    with pytest.raises(ValueError, match=f"kd is negative for {table.names[2]}"):
        link.send(t)
    t = dataclasses.replace(MotorTargets.zeros(n, enabled=True), enabled=np.ones(n))
    with pytest.raises(ValueError, match="enabled must be a bool array"):
        link.send(t)
    assert link.commands_sent == 0


def test_lowcmd_mode_leaves_slot_29_alone(robot, link):
    sent = link.send(MotorTargets.zeros(len(link.table.names), enabled=True), arm_sdk_weight=0.7)
    assert sent.motor_cmd[29].q == 0.0
    assert robot.wait_until(lambda r: r.accepted_lowcmd == 1, TIMEOUT)
    assert robot.accepted_arm_sdk == 0


def test_arm_sdk_weight_ramps_without_steps(robot, arm_link):
    link = arm_link
    targets = MotorTargets.zeros(len(link.table.names), enabled=True)
    ramp, dt = link.config.weight_ramp_time, 0.02
    eps = 1e-6  # the weight travels as float32
    now = 1000.0
    weights = [link.send(targets, 1.0, now=now).motor_cmd[29].q]
    assert weights[0] == 0.0  # the first send has no dt to ramp over
    for _ in range(int(ramp / dt) + 5):
        now += dt
        weights.append(link.send(targets, 1.0, now=now).motor_cmd[29].q)
    steps = np.diff(weights)
    assert (steps <= dt / ramp + eps).all() and (steps >= 0).all()
    assert weights[-1] == 1.0
    assert weights.index(1.0) == pytest.approx(ramp / dt, abs=1)
    # down toward 0.3, then a long pause must not turn into a jump
    for _ in range(10):
        now += dt
        weights.append(link.send(targets, 0.3, now=now).motor_cmd[29].q)
    assert abs(weights[-1] - (1.0 - 10 * dt / ramp)) < eps
    now += 5.0
    weights.append(link.send(targets, 0.0, now=now).motor_cmd[29].q)
    assert weights[-2] - weights[-1] == pytest.approx(MAX_RAMP_DT / ramp, abs=eps)
    # time going backwards moves nothing
    before = link.arm_sdk_weight
    assert link.send(targets, 1.0, now=now - 1.0).motor_cmd[29].q == pytest.approx(before, abs=eps)
    count = len(weights) + 1
    assert robot.wait_until(lambda r: r.accepted_arm_sdk == count, TIMEOUT)
    assert robot.last_arm_sdk.motor_cmd[29].q == pytest.approx(link.arm_sdk_weight, abs=eps)
    assert robot.accepted_lowcmd == 0


def test_arm_sdk_weight_must_be_in_range(arm_link):
    targets = MotorTargets.zeros(len(arm_link.table.names))
    for bad in (-0.1, 1.5, math.nan, "1"):
        with pytest.raises(ValueError, match="arm_sdk_weight"):
            arm_link.send(targets, bad)


def test_23dof_variant_leaves_absent_slots_off(dds_domain):
    table = load_joint_table("g1_23dof")
    with (
        LoopbackRobot(dds_domain, "lo", table=table) as robot,
        G1Link(LinkConfig(domain_id=dds_domain, network_interface="lo", mode="lowcmd"), table) as link,
    ):
        assert link.wait_for_state(TIMEOUT)
        targets = random_targets(table, np.random.default_rng(1))
        targets.enabled[:] = True
        link.send(targets)
        assert robot.wait_until(lambda r: r.accepted_lowcmd == 1, TIMEOUT)
        got = robot.last_lowcmd
        for slot in (13, 14, 20, 21, 27, 28, *range(29, 35)):
            assert got.motor_cmd[slot].mode == 0 and got.motor_cmd[slot].kp == 0.0
        assert sum(m.mode for m in got.motor_cmd) == len(table.names) == 23


# --- state -----------------------------------------------------------------------------------


def test_latest_state_and_sample_agree(robot, link):
    assert wait_for(lambda: link.states_received >= 5)
    state, recv_time = link.latest_state()
    assert isinstance(state, LowState_) and state.crc == lowstate_crc(state)
    assert state.mode_machine == robot.mode_machine
    assert 0.0 <= time.monotonic() - recv_time < TIMEOUT
    sample = link.latest_sample()
    expected = state_sample(state, link.table, recv_time)
    for got, want in zip(link.joint_arrays(state), (expected.q, expected.dq, expected.tau_est), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(sample.quaternion, [1, 0, 0, 0])
    np.testing.assert_allclose(sample.accelerometer, [0, 0, 9.81], rtol=1e-6)
    np.testing.assert_allclose(sample.q, link.table.column("default_position"), atol=0.05)
    assert sample.q.shape == (len(link.table.names),)
    ticks = [link.latest_sample().tick]
    assert wait_for(lambda: link.latest_sample().tick > ticks[0])
    assert link.state_crc_errors == 0


@pytest.mark.parametrize("verify", [True, False])
def test_state_with_bad_crc(dds_domain, verify):
    cfg = LinkConfig(domain_id=dds_domain, network_interface="lo", verify_state_crc=verify)
    with G1Link(cfg) as link:
        participant = join_domain(dds_domain, "lo")
        try:
            writer = DataWriter(participant, Topic(participant, "rt/lowstate", LowState_), qos=WRITER_QOS)
            state = LowState_(mode_machine=3, tick=1)
            state.crc = lowstate_crc(state) ^ 0x80000000
            writer.write(state)
            if verify:
                assert wait_for(lambda: link.state_crc_errors == 1)
                assert link.latest_state() is None and not link.wait_for_state(0.0)
            else:
                assert link.wait_for_state(TIMEOUT)
                assert link.latest_state()[0] == state
            state.tick = 2
            for i, m in enumerate(state.motor_state):
                m.q, m.dq, m.tau_est = i / 8, -i / 4, i / 2  # f32-exact
            state.imu_state.rpy = [0.5, -0.25, 0.125]
            state.crc = lowstate_crc(state)
            writer.write(state)
            assert wait_for(lambda: link.latest_sample() is not None and link.latest_sample().tick == 2)
            got, recv_time = link.latest_state()
            assert got == state
            sample, expected = link.latest_sample(), state_sample(state, link.table, recv_time)
            for name in ("q", "dq", "tau_est", "quaternion", "gyroscope", "accelerometer", "rpy"):
                np.testing.assert_array_equal(getattr(sample, name), getattr(expected, name))
            np.testing.assert_array_equal(sample.q, link.table.motor_indices / 8)
            assert (sample.tick, sample.mode_machine, sample.recv_time) == (2, 3, recv_time)
        finally:
            leave_domain(dds_domain, participant)


def test_reconnect_forgets_the_old_state(robot, link):
    link.close()
    robot.stop()  # no robot: the reconnected link must not send on the old mode_machine
    link.connect()
    assert link.latest_state() is None and not link.wait_for_state(0.0)
    with pytest.raises(NoLowStateError):
        link.send(MotorTargets.zeros(len(link.table.names)))


def test_close_stops_state_updates(robot, link):
    assert wait_for(lambda: link.states_received >= 2)
    link.close()
    link.close()  # idempotent
    frozen = link.states_received
    published = robot.stats().states_published
    assert robot.wait_until(lambda r: r.stats().states_published >= published + 10, TIMEOUT)
    assert link.states_received == frozen
    assert not link.connected


def test_default_interface_works(dds_domain):
    with (
        LoopbackRobot(dds_domain, "") as robot,
        G1Link(LinkConfig(domain_id=dds_domain, mode="lowcmd")) as link,
    ):
        assert link.wait_for_state(TIMEOUT)
        link.send(MotorTargets.zeros(len(link.table.names)))
        assert robot.wait_until(lambda r: r.accepted_lowcmd == 1, TIMEOUT)


def test_send_is_lean(link):
    targets = random_targets(link.table, np.random.default_rng(2))
    for _ in range(20):
        link.send(targets)
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        link.send(targets)
    per_call = (time.perf_counter() - t0) / n
    # ~60 us here, including building the returned LowCmd_; cyclonedds' serializer alone is ~250 us
    assert per_call < 1e-3, f"send() took {per_call * 1e6:.0f} us per call"
