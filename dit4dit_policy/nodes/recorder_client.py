"""A ROS client of the teleoperation recorder: publishes what a teleoperation rig would (cameras,
joint states, the operator's commands, the instruction), calls the recorder's services and watches
its status and episode markers. Used by the recorder benchmark and tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from dit4dit_policy.config import load_yaml
from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.nodes.bridge_client import wait_for
from dit4dit_policy.nodes.common import RosClient


class RecorderClient(RosClient):
    """Runs its own rclpy context and executor thread. Publishes reliably (the recorder then
    subscribes reliably); `images` overrides the camera topics of recorder.yaml."""

    def __init__(self, domain_id: int, images: Sequence[str] | None = None, params_file: str = "recorder.yaml"):
        params = load_yaml(params_file)["recorder"]["ros__parameters"]
        topics, services = params["topics"], params["services"]
        self.images = list(topics["images"] if images is None else images)
        self.joint_names = list(load_joint_table(params["robot_variant"], params["joint_table"]).names)
        super().__init__(domain_id, "recorder_client")
        node = self.node
        self.image_pubs = {t: node.create_publisher(Image, t, QoSProfile(depth=10)) for t in self.images}
        self.joint_pub = node.create_publisher(JointState, topics["joint_states"], QoSProfile(depth=1000))
        self.command_pub = node.create_publisher(JointState, topics["teleop_command"], QoSProfile(depth=1000))
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.instruction_pub = node.create_publisher(String, topics["instruction"], latched)
        self.status: list[DiagnosticStatus] = []
        self.markers: list[str] = []
        node.create_subscription(DiagnosticStatus, topics["status"], self.status.append, 10)
        node.create_subscription(String, topics["episode_marker"], lambda m: self.markers.append(m.data), 10)
        self._start = node.create_client(Trigger, services["start"])
        self._stop = node.create_client(SetBool, services["stop"])
        self._discard = node.create_client(Trigger, services["discard"])
        self.start_spinning()

    def wait_for_recorder(self, timeout: float = 30.0) -> None:
        """Until the services answer and the recorder subscribes every topic we publish: anything
        sent before that is not recorded."""
        for client in (self._start, self._stop, self._discard):
            wait_for(client.service_is_ready, timeout, f"the recorder's {client.srv_name} service")
        pubs = [*self.image_pubs.values(), self.joint_pub, self.command_pub, self.instruction_pub]
        for pub in pubs:
            what = f"the recorder subscribing {pub.topic_name}"
            wait_for(lambda p=pub: p.get_subscription_count() > 0, timeout, what)

    def _call(self, client, request, timeout: float):
        future = client.call_async(request)
        wait_for(future.done, timeout, f"a reply from {client.srv_name}")
        return future.result()

    def start(self, timeout: float = 30.0) -> Trigger.Response:
        return self._call(self._start, Trigger.Request(), timeout)

    def stop(self, success: bool, timeout: float = 60.0) -> SetBool.Response:
        return self._call(self._stop, SetBool.Request(data=success), timeout)

    def discard(self, timeout: float = 30.0) -> Trigger.Response:
        return self._call(self._discard, Trigger.Request(), timeout)

    def instruct(self, text: str) -> None:
        self.instruction_pub.publish(String(data=text))

    def image(self, height: int, width: int, fill: int | None = None, rng: np.random.Generator | None = None) -> Image:
        """An rgb8 image stamped now: all `fill`, or noise from `rng`."""
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
        n = height * width * 3
        pixels = (
            np.full(n, fill, np.uint8)
            if fill is not None
            else (rng or np.random.default_rng()).integers(0, 255, n, dtype=np.uint8)
        )
        msg.data = pixels.tobytes()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        return msg

    def joints(self, k: int) -> JointState:
        """Joint states of the whole table, stamped now; position k * 1e-3 rad on every joint."""
        msg = JointState(name=self.joint_names, position=[k * 1e-3] * len(self.joint_names))
        msg.header.stamp = self.node.get_clock().now().to_msg()
        return msg

    def stream(
        self,
        seconds: float,
        camera_hz: float = 30.0,
        image_size: tuple[int, int] = (480, 640),
        joint_hz: float = 500.0,
        command_hz: float = 50.0,
        stop: threading.Event | None = None,
    ) -> dict[str, int]:
        """Publish every camera, joint states and operator commands at their rates for `seconds`
        (absolute deadlines: a late tick goes out at once, so the rates hold on average); returns
        the count sent per topic."""
        h, w = image_size
        frame = self.image(h, w, rng=np.random.default_rng(0))
        sent = {t: 0 for t in [*self.images, self.joint_pub.topic_name, self.command_pub.topic_name]}
        tick = 1.0 / joint_hz
        start = time.monotonic()
        k = 0

        def due(hz: float) -> bool:  # the first tick of each period of a slower stream (exact in floats)
            return k == 0 or (k * hz) // joint_hz != ((k - 1) * hz) // joint_hz

        while time.monotonic() - start < seconds and not (stop and stop.is_set()):
            t = k * tick
            delay = start + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.joint_pub.publish(self.joints(k))
            sent[self.joint_pub.topic_name] += 1
            if due(command_hz):
                self.command_pub.publish(self.joints(k))
                sent[self.command_pub.topic_name] += 1
            if due(camera_hz):
                frame.header.stamp = self.node.get_clock().now().to_msg()
                for topic, pub in self.image_pubs.items():
                    pub.publish(frame)
                    sent[topic] += 1
            k += 1
        return sent

    def last_status(self) -> dict[str, str]:
        if not self.status:
            return {}
        latest = self.status[-1]
        values = {kv.key: kv.value for kv in latest.values}
        return {"level": str(ord(latest.level)), "message": latest.message, **values}
