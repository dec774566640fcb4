"""The safety bridge as a real node: rclpy process + loopback robot process + this test process.

Commands go in on the ROS topic; what the bridge writes is read off the robot's DDS topic with a
raw Cyclone reader, exactly as the robot would see it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from std_srvs.srv import Trigger

from dit4dit_policy.config import load_yaml
from dit4dit_policy.g1 import lowcmd_crc
from dit4dit_policy.g1.tap import CommandTap
from dit4dit_policy.nodes.bridge_client import BridgeClient, wait_for
from dit4dit_policy.runner import NodeSpec, ProcessGroup

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ELBOW = "right_elbow_joint"
ELBOW_SLOT = 25
WEIGHT_SLOT = 29


@pytest.fixture
def stack(dds_domain, tmp_path: Path) -> Iterator[Callable[..., tuple[BridgeClient, CommandTap, ProcessGroup]]]:
    ros_domain = random.randint(1, 100)
    started: list[tuple[BridgeClient, CommandTap, ProcessGroup]] = []

    def start(**overrides) -> tuple[BridgeClient, CommandTap, ProcessGroup]:
        group = ProcessGroup(env={"ROS_DOMAIN_ID": str(ros_domain)}, log_dir=tmp_path / "logs")
        group.start("robot", NodeSpec("loopback_robot", args=["--domain", str(dds_domain)]))
        params = {"dds_domain": dds_domain, "ramp_time": 0.3, "shutdown_damping_time": 0.5, **overrides}
        group.start("bridge", NodeSpec("safety_bridge", params_files=["bridge.yaml"], overrides=params))
        ros, wire = BridgeClient(ros_domain), CommandTap(dds_domain)
        started.append((ros, wire, group))
        return ros, wire, group

    yield start
    for ros, wire, group in started:
        ros.close()
        wire.close()
        group.stop()


def stream(ros: BridgeClient, names, positions, seconds: float, rate: float = 50.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ros.command(names, positions)
        time.sleep(1.0 / rate)


def stream_until(ros: BridgeClient, names, positions, predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        stream(ros, names, positions, seconds=0.02)


def test_when_commanded_past_limits_expect_clamped_lowcmd_with_valid_crc_and_robot_following(stack, joint_table):
    ros, wire, group = stack(autostart=True)
    ros.wait_for_bridge()
    wait_for(lambda: len(wire.poll()) > 50, 20, "LowCmd_ on rt/arm_sdk")
    upper = joint_table.joints[joint_table.index(ELBOW)].limits.max_position - joint_table.soft_margin

    stream(ros, [ELBOW], [5.0], seconds=2.5)  # far beyond the elbow's 2.09 rad limit

    samples = wire.poll()
    elbow_q = np.array([s.motor_cmd[ELBOW_SLOT].q for s in samples])
    assert elbow_q.max() <= upper + 1e-6, "a target beyond the soft position limit reached the wire"
    assert elbow_q.max() > upper - 0.05, "the elbow never approached its (clamped) target"
    assert all(lowcmd_crc(s) == s.crc for s in samples), "a LowCmd_ on the wire has a wrong CRC"
    assert all(s.mode_machine == 5 for s in samples), "mode_machine not copied from the robot's LowState"
    weights = np.array([s.motor_cmd[WEIGHT_SLOT].q for s in samples])
    assert weights.max() > 0.5 and np.max(np.diff(weights)) < 0.05, "blend weight stepped or never rose"
    assert not any(s.motor_cmd[i].mode for s in samples for i in range(12)), "arm_sdk mode commanded a leg"

    # The loopback robot follows through its crude dynamics and the blend weight's 2 s ramp.
    stream_until(ros, [ELBOW], [5.0], lambda: abs(ros.joint_position(ELBOW) - upper) < 0.05, 10, "/joint_states")

    n_written = len(wire.poll())
    codes = group.stop()
    assert codes == {"bridge": 0, "robot": 0}
    summary = (group.log_dir / "robot.log").read_text()
    assert "dropped 0 with a bad CRC" in summary
    accepted = int(summary.split("rt/lowcmd and ")[1].split(" rt/arm_sdk")[0])
    assert accepted >= 0.9 * n_written, f"robot accepted {accepted} of {n_written} commands"


def test_when_not_activated_expect_nothing_on_the_wire_until_lifecycle_activate(stack):
    ros, wire, _ = stack(autostart=False)
    change = ChangeState.Request()
    change.transition.id = Transition.TRANSITION_CONFIGURE
    assert ros.call(ChangeState, "/safety_bridge/change_state", change).success
    ros.wait_for_bridge()

    stream(ros, [ELBOW], [1.0], seconds=1.5)
    assert wire.poll() == [], "the bridge wrote motor commands before activation"

    change.transition.id = Transition.TRANSITION_ACTIVATE
    assert ros.call(ChangeState, "/safety_bridge/change_state", change).success
    wait_for(lambda: len(wire.poll()) > 20, 10, "LowCmd_ after activation")

    change.transition.id = Transition.TRANSITION_DEACTIVATE
    assert ros.call(ChangeState, "/safety_bridge/change_state", change).success
    tail = wire.poll()[-5:]
    assert all(s.motor_cmd[ELBOW_SLOT].kp == 0.0 for s in tail), "deactivation did not end in damping"
    assert tail[-1].motor_cmd[WEIGHT_SLOT].q == 0.0, "deactivation left the blend weight up"


def test_when_estop_called_expect_latched_damping_until_reset(stack):
    ros, wire, _ = stack(autostart=True)
    ros.wait_for_bridge()
    wait_for(lambda: len(wire.poll()) > 20, 20, "LowCmd_ on rt/arm_sdk")
    assert ros.call(Trigger, "/dit4dit/estop", Trigger.Request()).success

    stream(ros, [ELBOW], [1.2], seconds=1.0)  # commands keep coming: they must not un-latch it
    n = len(wire.poll())
    time.sleep(0.3)
    after = wire.poll()[n:]
    assert after and all(s.motor_cmd[ELBOW_SLOT].kp == 0.0 and s.motor_cmd[ELBOW_SLOT].kd > 0 for s in after)
    _wait_for_refusals(ros, "ESTOP", "rejected.rejected_latched")
    _reset_to_position_control(ros, wire)


def _wait_for_refusals(ros: BridgeClient, state: str, counter: str) -> None:
    wait_for(
        lambda: ros.last_status().get("state") == state and int(ros.last_status()[counter]) > 0,
        5,
        f"safety status {state}, with the commands since counted as refused",
    )


def _reset_to_position_control(ros: BridgeClient, wire: CommandTap) -> None:
    assert ros.call(Trigger, "/dit4dit/reset", Trigger.Request()).success
    stream(ros, [ELBOW], [1.2], seconds=1.0)
    assert wire.poll()[-1].motor_cmd[ELBOW_SLOT].kp > 0, "reset did not bring the bridge back to position control"


def test_when_stop_called_expect_damping_and_commands_refused_until_reset(stack):
    ros, wire, _ = stack(autostart=True)
    ros.wait_for_bridge()
    wait_for(lambda: len(wire.poll()) > 20, 20, "LowCmd_ on rt/arm_sdk")
    stream(ros, [ELBOW], [1.2], seconds=0.5)
    assert wire.poll()[-1].motor_cmd[ELBOW_SLOT].kp > 0

    n = len(wire.poll())
    answer = ros.call(Trigger, "/dit4dit/stop", Trigger.Request())
    assert answer.success, answer.message
    stream(ros, [ELBOW], [1.2], seconds=0.5)  # refused, not followed
    written = wire.poll()[n:]
    # From the first damped LowCmd_ on (those before were written before the stop), damped only.
    first = next((i for i, s in enumerate(written) if s.motor_cmd[ELBOW_SLOT].kp == 0.0), None)
    assert first is not None, "no damped LowCmd_ after the stop"
    after = written[first:]
    assert len(after) > 100 and all(s.motor_cmd[ELBOW_SLOT].kp == 0.0 for s in after)
    # Damping while the blend weight ramps back to 0 (the robot's own controller has the arm then).
    assert all(s.motor_cmd[ELBOW_SLOT].kd > 0 for s in after if s.motor_cmd[WEIGHT_SLOT].q > 0)
    assert np.all(np.diff([s.motor_cmd[WEIGHT_SLOT].q for s in after]) <= 0), "the blend weight rose after stop"
    _wait_for_refusals(ros, "STOPPED", "rejected.rejected_not_enabled")
    _reset_to_position_control(ros, wire)


def test_when_robot_state_stops_expect_joint_states_to_stop_too_never_restamped(stack):
    ros, _, group = stack(autostart=True)
    ros.wait_for_bridge()
    wait_for(lambda: len(ros.joint_states) > 20, 20, "/joint_states")
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in ros.joint_states]
    assert np.all(np.diff(stamps) > 0), "a LowState was published twice"
    age = ros.node.get_clock().now().nanoseconds * 1e-9 - stamps[-1]
    assert 0.0 <= age < 0.5  # stamped when it arrived: recent, not in the future

    robot = group.procs["robot"]
    robot.terminate()
    robot.wait(10)
    time.sleep(0.3)  # what was on its way has arrived
    n = len(ros.joint_states)
    time.sleep(1.0)
    assert len(ros.joint_states) == n, "/joint_states went on with a state that no longer arrives"


def _fifo_priorities(pid: int) -> dict[int, int]:
    """SCHED_FIFO priority of each thread of a process (0: not SCHED_FIFO)."""
    out = {}
    for tid in (int(t) for t in os.listdir(f"/proc/{pid}/task")):
        try:
            fifo = os.sched_getscheduler(tid) == os.SCHED_FIFO
            out[tid] = os.sched_getparam(tid).sched_priority if fifo else 0
        except ProcessLookupError:
            continue
    return out


def test_when_running_expect_its_ros_side_real_time_below_the_motor_loop(stack):
    ros, _, group = stack(autostart=True)
    ros.wait_for_bridge()
    wait_for(lambda: ros.last_status().get("writing") == "True", 20, "the bridge writing LowCmd_")
    if ros.last_status().get("realtime") != "True":
        pytest.skip("this machine grants no SCHED_FIFO (needs root, CAP_SYS_NICE or an rtprio limit)")
    params = load_yaml("bridge.yaml")["safety_bridge"]["ros__parameters"]
    node_pid = group.procs["bridge"].pid
    node = _fifo_priorities(node_pid)
    assert set(node.values()) == {params["ros_realtime_priority"]}, f"the node's threads (executor, DDS): {node}"
    children = Path(f"/proc/{node_pid}/task/{node_pid}/children").read_text().split()
    (motor_pid,) = [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    motor = _fifo_priorities(int(motor_pid))
    assert max(motor.values()) == params["realtime_priority"], f"the motor loop is not at its priority: {motor}"


def test_when_its_ros_side_would_outrank_the_motor_loop_expect_a_refusal_naming_both(stack, tmp_path):
    _, _, group = stack(autostart=True, ros_realtime_priority=80)
    assert group.procs["bridge"].wait(20) != 0
    log = (tmp_path / "logs" / "bridge.log").read_text()
    assert "ros_realtime_priority must be in 0..99 and below realtime_priority (80), got 80" in log
