"""The simulated G1 as a ROS 2 node: `ros2 run dit4dit_policy g1_sim` (parameters: config/sim.yaml).

Robot side, DDS (like the real robot, on `dds_domain`, 1 by convention for simulators):
publishes rt/lowstate at 500 Hz, executes rt/lowcmd and rt/arm_sdk and drops every command whose
CRC is wrong (dit4dit_policy.sim.simulator, on g1.robot_side). Point the safety bridge at the same
domain.

ROS side (on ROS_DOMAIN_ID, like every other node):
- `topics.image` (default /camera/color/image_raw), sensor_msgs/Image rgb8, camera.width x
  camera.height at camera.rate_hz of simulated time, frame id camera.frame_id; stamped with
  simulated time anchored to the wall clock at start (comparable with the bridge's /joint_states).
  Reliable QoS (best-effort subscribers match it too).
- `topics.task` (default /sim/task), std_msgs/String with a JSON object, at task_rate_hz and on
  every change (reset, touch, back home); transient-local, so a late subscriber gets the latest:
    episode, seed         episode index; its block pose comes from numpy default_rng([seed, episode])
    sim_time              s since the simulation started; episode_time: s since the episode's reset
    stamp                 sim_time anchored to the wall clock (what image stamps carry)
    block                 {position [x,y,z] world m, quaternion [w,x,y,z] world,
                           position_in_pelvis [x,y,z] m, size [x,y,z] m}
    hand                  {position, position_in_pelvis}: centre of the right hand's collision sphere
    hand_block_distance   m between hand sphere and block surface (< 0: penetrating)
    success, success_time the block was touched this episode (latched; episode time of the touch)
    at_home               right arm at the home pose and at rest, now
    done, done_time       back home after the touch (latched): the episode is over
- `services.reset` (default /sim/reset), std_srvs/Trigger: a new episode (block at a new random
  pose, the robot teleported to the home pose, everything at rest); the response message is the
  new task state's JSON. Whoever drives the robot re-engages from there (the bridge's
  /dit4dit/reset: its start-up ramp from the measured pose).
- /clock (rosgraph_msgs/Clock) at clock_rate_hz when the standard `use_sim_time` parameter is
  true, carrying the same anchored simulated time. The node's own timers run on the steady clock.

Physics and the robot's DDS side run in a child process (sim/process.py); the camera renders on a
thread of this one. Start the safety bridge once /sim/task is there (SimClient.wait_for_sim), or
give its activation time (activate_state_wait): building the model takes a few seconds.
"""

from __future__ import annotations

import json
import threading

import rclpy
from builtin_interfaces.msg import Time
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.nodes.common import spin_until_shutdown
from dit4dit_policy.nodes.params import declare_from_yaml
from dit4dit_policy.sim.config import SIM_PARAMS_FILE, SIM_SECTION, sim_configs
from dit4dit_policy.sim.physics import sim_model
from dit4dit_policy.sim.process import SimProcess, SimSpec
from dit4dit_policy.sim.renderer import Frame, FrameRenderer

NODE_NAME = SIM_SECTION
PARAMS_FILE = SIM_PARAMS_FILE


def stamp_msg(seconds: float) -> Time:
    sec = int(seconds // 1)
    return Time(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


class SimNode(Node):
    """The ROS side; physics and the robot's DDS side run in a child process (sim/process.py)."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        p = self.p = declare_from_yaml(self, PARAMS_FILE, NODE_NAME)
        for name in ("task_rate_hz", "clock_rate_hz"):
            if not p[name] > 0:
                raise ValueError(f"{name} must be > 0 Hz, got {p[name]!r}")
        self.spec = SimSpec(*sim_configs(p), domain_id=p["dds_domain"], network_interface=p["network_interface"])
        c = self.spec.sim
        self.renderer = FrameRenderer(sim_model(c, load_joint_table()), c.camera_width, c.camera_height,
                                      self._on_frame)
        self.sim: SimProcess | None = None
        self._image_pub = self.create_publisher(Image, p["topics.image"], QoSProfile(depth=5))
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._task_pub = self.create_publisher(String, p["topics.task"], latched)
        self._clock_pub = None
        if self.get_parameter("use_sim_time").value:
            self._clock_pub = self.create_publisher(ClockMsg, "/clock", 10)
        self.create_service(Trigger, p["services.reset"], self._on_reset)
        # Wall-clock timers whatever use_sim_time says: this node is where simulated time comes from.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(1.0 / p["task_rate_hz"], self._publish_task, clock=steady)
        if self._clock_pub is not None:
            self.create_timer(1.0 / p["clock_rate_hz"], self._publish_clock, clock=steady)
        self._frame_lock = threading.Lock()
        self._frame: Frame | None = None
        self._task_dirty = False
        # Frames (render thread) and task changes (event thread) wake the executor, which publishes.
        self._wake = self.create_guard_condition(self._flush)

    def start(self) -> None:
        """Start the renderer, then the simulator process (RuntimeError if either cannot start)."""
        self.renderer.start()
        self.sim = SimProcess(self.spec, on_snapshot=self.renderer.submit, on_task_change=self._on_task_change)
        c = self.spec.sim
        if c.realtime_priority > 0 and not self.sim.stats()["realtime"]:
            self.get_logger().warning(
                f"physics loop did not get SCHED_FIFO priority {c.realtime_priority} (needs CAP_SYS_NICE or an rtprio "
                "limit): on a busy machine the simulation may stall and the bridge fault"
            )
        self.get_logger().info(
            f"G1 simulator on DDS domain {self.spec.domain_id}: {'fixed' if c.fixed_base else 'floating'} base, "
            f"physics {c.physics_rate_hz:g} Hz, camera {c.camera_width}x{c.camera_height} at {c.camera_rate_hz:g} Hz "
            f"on {self.p['topics.image']}, task on {self.p['topics.task']}"
        )

    def stop(self) -> None:
        s = self.sim.close() if self.sim is not None else None
        self.renderer.stop()
        r = self.renderer
        if s is None:
            self.get_logger().error("the simulator process had died")
            return
        self.get_logger().info(
            f"stopped at sim time {s['sim_time']:.1f} s: published {s['states_published']} LowState_; accepted "
            f"{s['accepted_lowcmd']} rt/lowcmd and {s['accepted_arm_sdk']} rt/arm_sdk; dropped {s['dropped_bad_crc']} "
            f"with a bad CRC and {s['dropped_malformed']} malformed; {s['slips']} real-time slips; "
            f"{r.frames_rendered} frames rendered, {r.frames_dropped} dropped"
            + (f"; the loop had failed: {s['error']}" if s["error"] else "")
        )

    # from other threads

    def _on_frame(self, frame: Frame) -> None:
        with self._frame_lock:
            self._frame = frame
        self._wake.trigger()

    def _on_task_change(self) -> None:
        self._task_dirty = True
        self._wake.trigger()

    # executor callbacks

    def _flush(self) -> None:
        with self._frame_lock:
            frame, self._frame = self._frame, None
        if frame is not None:
            self._publish_frame(frame)
        if self._task_dirty:
            self._publish_task()

    def _publish_frame(self, frame: Frame) -> None:
        h, w, _ = frame.image.shape
        msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3)
        msg.header.stamp = stamp_msg(frame.stamp)
        msg.header.frame_id = self.p["camera.frame_id"]
        msg.data = frame.image.tobytes()
        self._image_pub.publish(msg)

    def _publish_task(self) -> None:
        self._task_dirty = False
        self._check_alive()
        self._task_pub.publish(String(data=json.dumps(self.sim.task_state())))

    def _publish_clock(self) -> None:
        self._clock_pub.publish(ClockMsg(clock=stamp_msg(self.sim.stamp_now())))

    def _check_alive(self) -> None:
        """A dead simulator or camera ends the node: nothing it would publish could be trusted."""
        if not self.sim.alive:
            raise RuntimeError("the simulator process died")
        if self.renderer.error is not None:
            raise RuntimeError(f"the head camera stopped: {self.renderer.error}") from self.renderer.error

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            task = self.sim.reset()
        except RuntimeError as e:
            response.success, response.message = False, str(e)
            return response
        self.get_logger().info(f"episode {task['episode']}: block at {task['block']['position_in_pelvis']} (pelvis)")
        response.success = True
        response.message = json.dumps(task)
        return response


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    try:
        node = SimNode()
        node.start()
    except (ValueError, KeyError, RuntimeError, FileNotFoundError) as e:
        rclpy.logging.get_logger(NODE_NAME).error(f"cannot start: {e}")
        rclpy.try_shutdown()
        raise SystemExit(2) from e
    spin_until_shutdown(node, node.stop)


if __name__ == "__main__":
    main()
