"""The DiT4DiT policy node: camera + joint states + instruction in, joint targets to the safety
bridge out, at control rate, never waiting for the model.

Conversion only: stamp sync, chunk blending, the inference worker and the hold logic are the
`dit4dit_policy.policy` core; preprocessing is `dit4dit_policy.preprocessing`, shared with training.
"""

from __future__ import annotations

import time

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dit4dit_policy.model.checkpoint import read_checkpoint_config
from dit4dit_policy.model.text import build_text_encoder
from dit4dit_policy.nodes.common import spin_until_shutdown, stamp_seconds
from dit4dit_policy.nodes.params import declare_from_yaml
from dit4dit_policy.periodic import PeriodicThread
from dit4dit_policy.policy.config import PolicyConfig
from dit4dit_policy.policy.controller import Command, PolicyController
from dit4dit_policy.policy.serving import ObservationPolicy
from dit4dit_policy.policy.sync import Observation
from dit4dit_policy.policy.worker import InferenceWorker
from dit4dit_policy.preprocessing import decode_compressed_image, raw_image_array
from dit4dit_policy.runtime.runtime import open_runtime

NODE_NAME = "policy_node"
PARAMS_FILE = "policy.yaml"
def image_array(msg: Image) -> tuple[np.ndarray, str]:
    """sensor_msgs/Image as (uint8 HxWxC view without row padding, encoding): the conversion's path too."""
    return raw_image_array(msg.data, msg.height, msg.width, msg.step, msg.encoding), msg.encoding


def compressed_array(msg: CompressedImage) -> tuple[np.ndarray, str]:
    """sensor_msgs/CompressedImage (JPEG/PNG) decoded to (uint8 HxWx3 RGB, 'rgb8')."""
    return decode_compressed_image(msg.data), "rgb8"


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        p = self.p = declare_from_yaml(self, PARAMS_FILE, NODE_NAME)
        if not p["checkpoint"]:
            raise ValueError("parameter 'checkpoint' is empty: point it at a checkpoint folder")
        if p["torch_threads"] > 0:
            torch.set_num_threads(p["torch_threads"])
        text_encoder = None  # the one the checkpoint's preset describes
        if p["text_encoder_path"]:
            text_cfg = read_checkpoint_config(p["checkpoint"]).text
            text_encoder = build_text_encoder(text_cfg.encoder_config(path=p["text_encoder_path"]))
        runtime = open_runtime(
            p["backend"], p["checkpoint"], text_encoder=text_encoder, device=p["device"], precision=p["precision"]
        )
        cfg = runtime.cfg
        self.state_joints, self.action_joints = list(p["state_joints"]), list(p["action_joints"])
        if len(self.state_joints) != cfg.state.joints or len(self.action_joints) != cfg.action.real_dim:
            raise ValueError(
                f"checkpoint {p['checkpoint']} takes {cfg.state.joints} state joints and commands "
                f"{cfg.action.real_dim}; state_joints has {len(self.state_joints)}, "
                f"action_joints {len(self.action_joints)}"
            )
        self.config = PolicyConfig.from_mapping({name: p[name] for name in PolicyConfig.__dataclass_fields__})
        self.policy = ObservationPolicy(runtime, p["instruction"])
        self.worker = InferenceWorker(self._infer, self.config.latency_budget)
        self.controller = PolicyController(self.config, self.worker)

        self._cmd_pub = self.create_publisher(JointState, p["topics.joint_command"], 10)
        self._chunk_pub = self.create_publisher(JointTrajectory, p["topics.action_chunk"], 10)
        self._status_pub = self.create_publisher(DiagnosticStatus, p["topics.status"], 10)
        if p["image_transport"] == "raw":
            self.create_subscription(Image, p["topics.image"], self._on_image, qos_profile_sensor_data)
        elif p["image_transport"] == "compressed":
            self.create_subscription(CompressedImage, p["topics.image"], self._on_compressed, qos_profile_sensor_data)
        else:
            raise ValueError(f"image_transport must be raw or compressed, got {p['image_transport']!r}")
        self.create_subscription(JointState, p["topics.joint_states"], self._on_joints, 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(String, p["topics.instruction"], self._on_instruction, latched)
        self.create_service(Trigger, p["topics.restart_service"], self._on_restart)
        self.create_timer(1.0 / p["status_rate"], self._publish_status)
        # Triggered by the worker after each inference; the executor then publishes the chunk, so
        # that the control tick never spends its period building and sending a trajectory.
        self._chunk_ready = self.create_guard_condition(self._publish_chunk)
        self._last_reason: str | None = "starting"
        self._last_chunk_stamp: float | None = None
        self._overruns = 0
        self._tick_thread = PeriodicThread(
            1.0 / self.config.control_rate_hz, self._tick, "policy-tick", realtime_priority=p["realtime_priority"]
        )

    def start(self) -> None:
        self.worker.start()
        self._tick_thread.start()
        if self.p["realtime_priority"] > 0:
            # The thread reports whether it got the priority once it runs: give it a moment.
            time.sleep(0.05)
            if not self._tick_thread.realtime:
                self.get_logger().warning(
                    f"control tick did not get SCHED_FIFO priority {self.p['realtime_priority']} "
                    "(needs CAP_SYS_NICE or an rtprio limit): expect jitter while inference runs"
                )
        self.get_logger().info(
            f"serving {self.p['checkpoint']} with {self.p['backend']} on {self.p['device']}, "
            f"{self.config.control_rate_hz:g} Hz to {self.p['topics.joint_command']}"
        )

    def stop(self) -> None:
        self._tick_thread.stop()
        self.worker.stop()

    # Inputs -----------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        try:
            frame = image_array(msg)
        except ValueError as e:
            self.get_logger().error(str(e), throttle_duration_sec=5.0)
            return
        self.controller.add_frame(frame, stamp_seconds(msg.header.stamp))

    def _on_compressed(self, msg: CompressedImage) -> None:
        try:
            frame = compressed_array(msg)
        except (OSError, ValueError) as e:
            self.get_logger().error(f"cannot decode {msg.format!r} image: {e}", throttle_duration_sec=5.0)
            return
        self.controller.add_frame(frame, stamp_seconds(msg.header.stamp))

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = np.array([msg.position[msg.name.index(name)] for name in self.state_joints])
        except (ValueError, IndexError):
            missing = sorted(set(self.state_joints) - set(msg.name))
            self.get_logger().error(f"joint states lack {missing}", throttle_duration_sec=5.0)
            return
        try:
            self.controller.add_joints(q, stamp_seconds(msg.header.stamp))
        except ValueError as e:  # NaN/inf from the robot: refuse the message, keep serving
            self.get_logger().error(f"joint states refused: {e}", throttle_duration_sec=5.0)

    def _on_instruction(self, msg: String) -> None:
        self.policy.instruction = msg.data
        self.get_logger().info(f"instruction: {msg.data!r}")

    def _on_restart(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        now = self.get_clock().now().nanoseconds * 1e-9
        self.controller.restart(now)
        response.success, response.message = True, f"restarted: using observations from {now:.3f} on"
        return response

    # Inference (the worker's thread) -----------------------------------------------------------
    def _infer(self, obs: Observation) -> np.ndarray:
        chunk = self.policy(obs)
        self._chunk_ready.trigger()
        return chunk

    # Control tick (its own thread: never waits for the executor or the model) -----------------
    def _tick(self, _monotonic: float) -> None:
        now = self.get_clock().now()
        result = self.controller.tick(now.nanoseconds * 1e-9)
        if isinstance(result, Command):
            msg = JointState()
            msg.header.stamp = now.to_msg()
            msg.name = self.action_joints
            msg.position = result.target.tolist()
            self._cmd_pub.publish(msg)
            reason = None
        else:
            reason = f"{result.reason.value}{': ' + result.detail if result.detail else ''}"
        if reason != self._last_reason:
            if reason is None:
                self.get_logger().info("publishing joint targets")
            else:
                self.get_logger().warning(f"not publishing: {reason}")
            self._last_reason = reason

    def _publish_chunk(self) -> None:
        latest = self.policy.latest_chunk()
        if latest is None or latest[0] == self._last_chunk_stamp:
            return
        stamp, chunk = latest
        self._last_chunk_stamp = stamp
        traj = JointTrajectory()
        traj.header.stamp.sec, traj.header.stamp.nanosec = int(stamp), int((stamp % 1) * 1e9)
        traj.joint_names = self.action_joints
        for k, action in enumerate(chunk):
            point = JointTrajectoryPoint(positions=action.tolist())
            t = (k + 1) * self.config.action_period  # the chunk's time convention (policy/chunking.py)
            point.time_from_start.sec, point.time_from_start.nanosec = int(t), int((t % 1) * 1e9)
            traj.points.append(point)
        self._chunk_pub.publish(traj)

    def _publish_status(self) -> None:
        now = self.get_clock().now().nanoseconds * 1e-9
        s = self.controller.status(now)
        w = s.worker
        if w.overruns > self._overruns:
            self.get_logger().warning(
                f"inference overran its {self.config.latency_budget * 1e3:.0f} ms budget "
                f"{w.overruns - self._overruns} time(s); p99 {w.latency_p99 * 1e3:.1f} ms"
            )
            self._overruns = w.overruns
        period = self._tick_thread.stats()
        values = {
            "state": "publishing" if s.last_reason is None else s.last_reason.value,
            "fault": s.fault or "none",
            "frame_age_ms": f"{s.frame_age * 1e3:.1f}",
            "joint_age_ms": f"{s.joint_age * 1e3:.1f}",
            "inference_p50_ms": f"{w.latency_p50 * 1e3:.1f}",
            "inference_p99_ms": f"{w.latency_p99 * 1e3:.1f}",
            "inferences": str(w.completed),
            "inference_failures": str(w.failed),
            "overruns": str(w.overruns),
            "chunks_accepted": str(s.chunks_accepted),
            "chunks_rejected": str(s.chunks_rejected),
            # Camera frame stamp -> the tick that takes its chunk into use.
            "frame_to_chunk_p50_ms": f"{s.chunk_delay_p50 * 1e3:.1f}",
            "frame_to_chunk_p99_ms": f"{s.chunk_delay_p99 * 1e3:.1f}",
            "control_period_error_p99_ms": f"{period.p99 * 1e3:.3f}",
            "control_missed_periods": str(period.missed),
        }
        level = DiagnosticStatus.OK if s.last_reason is None else DiagnosticStatus.WARN
        if s.fault:
            level = DiagnosticStatus.ERROR
        diag = DiagnosticStatus(level=level, name=f"{NODE_NAME}: policy", message=values["state"])
        diag.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        self._status_pub.publish(diag)


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = PolicyNode()
    node.start()
    spin_until_shutdown(node, node.stop)


if __name__ == "__main__":
    main()
