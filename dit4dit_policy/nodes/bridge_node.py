"""The safety bridge as a ROS 2 lifecycle node: the only road from any policy to the G1's motors.

configure: read parameters, start the motor process (it joins the robot's DDS domain and runs the
loop, writing nothing); activate: start writing, beginning with the start-up ramp; deactivate /
shutdown: damping, then stop writing. Moves nothing until activated.
"""

from __future__ import annotations

import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import Node, State, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Imu, JointState
from std_srvs.srv import Trigger

from dit4dit_policy.bridge_process import BridgeProcess, BridgeSpec
from dit4dit_policy.g1 import LinkConfig
from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.nodes.common import spin_until_shutdown, stamp_seconds
from dit4dit_policy.nodes.params import declare_from_yaml
from dit4dit_policy.periodic import make_process_realtime
from dit4dit_policy.safety import EnableResult, SafetyConfig, SafetyState

NODE_NAME = "safety_bridge"
PARAMS_FILE = "bridge.yaml"
_FAULTY = {SafetyState.DAMPING.name, SafetyState.FAULT.name, SafetyState.ESTOP.name}


class SafetyBridgeNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.p = declare_from_yaml(self, PARAMS_FILE, NODE_NAME)
        prio, loop_prio = self.p["ros_realtime_priority"], self.p["realtime_priority"]
        if not 0 <= prio <= 99 or (prio > 0 and prio >= loop_prio):
            raise ValueError(
                f"ros_realtime_priority must be in 0..99 and below realtime_priority ({loop_prio}), "
                f"got {prio}: the ROS side must never preempt the motor loop"
            )
        self.bridge: BridgeProcess | None = None
        self._timers = []
        self._published_recv_time = -float("inf")  # of the LowState last published on /joint_states

    # Lifecycle --------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        p = self.p
        try:
            table = load_joint_table(p["robot_variant"], p["joint_table"])
            safety = SafetyConfig.from_params(p)
            link = LinkConfig(
                domain_id=p["dds_domain"],
                network_interface=p["network_interface"],
                mode=p["control_mode"],
                weight_ramp_time=p["weight_ramp_time"],
            )
            spec = BridgeSpec(
                robot_variant=p["robot_variant"],
                joint_table=p["joint_table"],
                safety=safety,
                link=link,
                rate_hz=p["rate_hz"],
                realtime_priority=p["realtime_priority"],
                exit_damping_time=p["shutdown_damping_time"],
            )
            self.bridge = BridgeProcess(spec)
        except (ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
            self.get_logger().error(f"configure failed: {e}")
            return TransitionCallbackReturn.FAILURE
        self._names = list(table.names)
        self._state_pub = self.create_publisher(JointState, p["topics.joint_states"], 10)
        self._imu_pub = self.create_publisher(Imu, p["topics.imu"], qos_profile_sensor_data)
        self._diag_pub = self.create_publisher(DiagnosticArray, p["topics.diagnostics"], 10)
        self._status_pub = self.create_publisher(DiagnosticStatus, p["topics.safety_status"], 10)
        self._cmd_sub = self.create_subscription(JointState, p["topics.joint_command"], self._on_command, 10)
        self._stop_srv = self.create_service(Trigger, p["topics.stop_service"], self._on_stop)
        self._estop_srv = self.create_service(Trigger, p["topics.estop_service"], self._on_estop)
        self._reset_srv = self.create_service(Trigger, p["topics.reset_service"], self._on_reset)
        self._timers = [
            self.create_timer(1.0 / p["state_publish_rate"], self._publish_state),
            self.create_timer(1.0 / p["diagnostics_rate"], self._publish_diagnostics),
        ]
        self.get_logger().info(
            f"configured: {table.variant}, mode {p['control_mode']}, DDS domain {p['dds_domain']}, "
            f"{p['rate_hz']:.0f} Hz; motors untouched until activated"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = self.bridge.activate(state_wait=self.p["activate_state_wait"])
        report = self.bridge.report()
        if not report["writing"]:
            self.get_logger().error(f"activate refused: {result.name}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f"activated: ramping from the measured pose over {self.p['ramp_time']} s from the first command"
        )
        if self.p["realtime_priority"] > 0 and not report["realtime"]:
            self.get_logger().warning(
                f"motor loop did not get SCHED_FIFO priority {self.p['realtime_priority']} (needs CAP_SYS_NICE or "
                "an rtprio limit): expect period jitter under load"
            )
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._damp("deactivated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._damp("shutting down")
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _damp(self, why: str) -> None:
        if self._live_bridge() is None:
            return
        self.get_logger().info(f"{why}: damping for {self.p['shutdown_damping_time']} s")
        self.bridge.deactivate(self.p["shutdown_damping_time"])

    def _release(self) -> None:
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers = []
        if self.bridge is not None:
            self.bridge.close()
            self.bridge = None

    # Callbacks --------------------------------------------------------------------------------
    def _live_bridge(self) -> BridgeProcess | None:
        """The motor process if it is running; a dead one is reported, never called."""
        if self.bridge is None or not self.bridge.alive:
            if self.bridge is not None:
                self.get_logger().error("motor process is not running", throttle_duration_sec=1.0)
            return None
        return self.bridge

    def _on_command(self, msg: JointState) -> None:
        bridge = self._live_bridge()
        if bridge is None:
            return
        n = len(msg.name)
        velocity = np.asarray(msg.velocity, dtype=np.float64) if len(msg.velocity) else None
        effort = np.asarray(msg.effort, dtype=np.float64) if len(msg.effort) else None
        stamp = stamp_seconds(msg.header.stamp)
        if stamp == 0.0:
            # Hand-written publishers (ros2 topic pub) leave the stamp empty: use arrival time.
            stamp = self.get_clock().now().nanoseconds * 1e-9
        verdict = bridge.command(list(msg.name), np.asarray(msg.position, dtype=np.float64), velocity, effort, stamp)
        if verdict.name != "ACCEPTED":
            self.get_logger().warning(f"command with {n} joints rejected: {verdict.name}", throttle_duration_sec=1.0)

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.get_logger().info("stop: damping, commands refused until reset")
        return self._halt(BridgeProcess.stop, "stopped; reset to move again", response)

    def _on_estop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.get_logger().error("EMERGENCY STOP: latched damping until reset")
        return self._halt(BridgeProcess.estop, "e-stop latched", response)

    def _halt(self, how, done: str, response: Trigger.Response) -> Trigger.Response:
        bridge = self._live_bridge()
        if bridge is not None:
            how(bridge)
        response.success = bridge is not None
        response.message = done if response.success else "motor process not running"
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self._live_bridge() is None:
            response.success, response.message = False, "motor process not running"
            return response
        self.bridge.reset()
        if self._state_machine.current_state[1] != "active":
            response.success, response.message = True, "reset; activate to move"
            return response
        result = self.bridge.activate(state_wait=0.0)
        response.success = result is EnableResult.RAMPING
        response.message = f"reset; {result.name.lower()}"
        return response

    # Publishing -------------------------------------------------------------------------------
    def _publish_state(self) -> None:
        bridge = self._live_bridge()
        sample = bridge.latest_sample() if bridge is not None else None
        if sample is None or not sample.recv_time > self._published_recv_time:
            return  # none yet, or this one is out already
        self._published_recv_time = sample.recv_time
        # Stamped when the LowState arrived, not now: a state that stopped coming (a stalled link,
        # a simulator resetting) must not look fresh to a policy pairing it with a new camera frame.
        age_ns = int((time.monotonic() - sample.recv_time) * 1e9)
        clock_now = self.get_clock().now()  # 0 under use_sim_time until the first /clock: never below it
        now = Time(nanoseconds=max(clock_now.nanoseconds - age_ns, 0), clock_type=clock_now.clock_type).to_msg()
        js = JointState()
        js.header.stamp = now
        js.name = self._names
        js.position, js.velocity, js.effort = sample.q.tolist(), sample.dq.tolist(), sample.tau_est.tolist()
        self._state_pub.publish(js)
        imu = Imu()
        imu.header.stamp = now
        imu.header.frame_id = self.p["imu_frame_id"]
        o, g, a = imu.orientation, imu.angular_velocity, imu.linear_acceleration
        o.w, o.x, o.y, o.z = (float(v) for v in sample.quaternion)  # Unitree order is w, x, y, z
        g.x, g.y, g.z = (float(v) for v in sample.gyroscope)
        a.x, a.y, a.z = (float(v) for v in sample.accelerometer)
        self._imu_pub.publish(imu)

    def _publish_diagnostics(self) -> None:
        if self.bridge is None:
            return
        if not self.bridge.alive:
            level, message, values = DiagnosticStatus.ERROR, "motor process died: nothing is commanding the robot", {}
        else:
            r = self.bridge.report()
            period, latency = r["period"], r["latency"]
            values = {
                **{k: str(v) for k, v in r["status"].items()},
                "writing": str(r["writing"]),
                "realtime": str(r["realtime"]),
                "robot_states_received": str(r["states_received"]),
                "commands_sent": str(r["commands_sent"]),
                "command_to_wire_p50_ms": f"{latency['p50'] * 1e3:.3f}",
                "command_to_wire_p99_ms": f"{latency['p99'] * 1e3:.3f}",
                "period_error_p50_ms": f"{period['p50'] * 1e3:.3f}",
                "period_error_p99_ms": f"{period['p99'] * 1e3:.3f}",
                "period_error_max_ms": f"{period['max'] * 1e3:.3f}",
                "missed_periods": str(period["missed"]),
            }
            state = r["status"]["state"]
            if r["loop_error"] is not None:
                level, message = DiagnosticStatus.ERROR, f"motor loop died: {r['loop_error']}"
            else:
                level = DiagnosticStatus.ERROR if state in _FAULTY else DiagnosticStatus.OK
                message = state
        diag = DiagnosticStatus(level=level, name=f"{NODE_NAME}: safety", message=message, hardware_id="g1")
        diag.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        self._status_pub.publish(diag)
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [diag]
        self._diag_pub.publish(arr)


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = SafetyBridgeNode()
    prio = node.p["ros_realtime_priority"]
    # Before configure: the motor process it starts and the threads created later inherit it
    # (the motor process then sets its own, higher, priority).
    if prio > 0 and not make_process_realtime(prio):
        node.get_logger().warning(
            f"ROS side did not get SCHED_FIFO priority {prio} (needs CAP_SYS_NICE or an rtprio limit): "
            "commands may reach the motor loop late while the machine is busy"
        )
    if node.p["autostart"]:
        node.trigger_configure()
        node.trigger_activate()

    def stop() -> None:
        node._damp("stopping")
        node._release()

    spin_until_shutdown(node, stop)


if __name__ == "__main__":
    main()
