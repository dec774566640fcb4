"""The simulator, the safety bridge and the scripted expert as real processes (dit4dit_policy.runner):
the expert, streaming as a teleoperator through the bridge, solves episodes; the head camera and the
task state arrive on ROS with wall-anchored stamps."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image, JointState

from dit4dit_policy.nodes.bridge_client import wait_for
from dit4dit_policy.nodes.sim_client import SimClient
from dit4dit_policy.runner import NodeSpec, ProcessGroup

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TELEOP = "/teleop/joint_command"


def test_when_sim_bridge_and_expert_run_as_processes_expect_episodes_done_and_camera_on_ros(dds_domain, tmp_path):
    ros_domain = random.randint(1, 100)
    group = ProcessGroup(env={"ROS_DOMAIN_ID": str(ros_domain)}, log_dir=tmp_path / "logs")
    wire = {"dds_domain": dds_domain, "network_interface": "lo"}
    try:
        with SimClient(ros_domain) as sim:
            _run(group, sim, wire)
    finally:
        codes = group.stop()
    assert codes == {"expert": 0, "bridge": 0, "sim": 0}, codes
    summary = (tmp_path / "logs" / "sim.log").read_text()
    assert "dropped 0 with a bad CRC" in summary, summary[-2000:]


def _run(group: ProcessGroup, sim: SimClient, wire: dict) -> None:
    images: list[tuple[float, Image]] = []
    joint_states: list[JointState] = []
    lock = threading.Lock()

    def on_image(msg: Image) -> None:
        with lock:
            images.append((time.time(), msg))

    sim.node.create_subscription(Image, "/camera/color/image_raw", on_image, qos_profile_sensor_data)
    sim.node.create_subscription(JointState, "/joint_states", joint_states.append, 10)
    clock: list[ClockMsg] = []
    sim.node.create_subscription(ClockMsg, "/clock", clock.append, 10)

    # use_sim_time only makes the simulator publish /clock: the other nodes stay on the wall clock.
    group.start("sim", NodeSpec("g1_sim", params_files=["sim.yaml"], overrides={**wire, "use_sim_time": True}))
    sim.wait_for_sim(timeout=60)
    bridge = {
        **wire,
        "autostart": True,
        "topics.joint_command": TELEOP,
        "ramp_time": 0.5,
        # The simulator shares this small machine with the tests: a stall is not a dead robot.
        "state_timeout": 0.5,
    }
    group.start("bridge", NodeSpec("safety_bridge", params_files=["bridge.yaml"], overrides=bridge))
    group.start("expert", NodeSpec("sim_expert", params_files=["expert.yaml"]))
    wait_for(lambda: len(joint_states) > 10, 30, "/joint_states from the bridge")
    time.sleep(1.0)  # the bridge's start-up ramp and arm_sdk weight ramp
    group.check_alive()

    for _ in range(2):
        task = sim.reset()
        assert not task["success"] and task["at_home"]
        outcome = sim.wait_for_outcome(timeout=60)  # 6-10 s when the machine is not overloaded
        group.check_alive()
        assert outcome.episode == task["episode"]
        assert outcome.success and outcome.done, f"episode {outcome.episode} not done: {outcome.task}"
        assert 0 < outcome.success_time < outcome.done_time

    with lock:
        received = list(images)
    assert len(received) > 30
    last = received[-1][1]
    assert (last.width, last.height, last.encoding, last.step) == (160, 120, "rgb8", 480)
    assert last.header.frame_id == "d435_link"
    stamps = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for _, m in received])
    arrivals = np.array([t for t, _ in received])
    assert np.all(np.diff(stamps) > 0)
    # Simulated time anchored to the wall clock: every image arrives after its stamp, and the
    # stamps, /clock and the bridge's /joint_states share one time base (simulated time from zero
    # would be ~1.8e9 s off; the bound only allows for a loaded machine's delays).
    assert np.all(arrivals >= stamps)
    assert np.all(arrivals - stamps < 10.0)
    js = joint_states[-1].header.stamp
    assert abs((js.sec + 1e-9 * js.nanosec) - stamps[-1]) < 10.0
    ticks = np.array([c.clock.sec + 1e-9 * c.clock.nanosec for c in clock[-50:]])
    assert len(ticks) == 50 and np.all(np.diff(ticks) > 0)
    assert abs(ticks[-1] - stamps[-1]) < 10.0, "/clock and the image stamps are not the same time"
    image = np.frombuffer(bytes(last.data), np.uint8).reshape(120, 160, 3)
    assert image.std() > 10, "a blank image"

