"""The bag player: chosen topics of one recorded episode, published at recorded timing (times a
speed factor) with header stamps moved to now, optionally looping. Feeds the running stack with
recorded sensors for closed-loop replay and benchmarks.

Conversion only: timing, stamps and bag reading are `dit4dit_policy.evaluation.playback`; the
recorded CDR is published as it is (restamped in place), never deserialised. Parameters:
config/bag_player.yaml.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from typing import Any

import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from std_msgs.msg import String

from dit4dit_policy.data.bag_episode import IMAGE_TYPES
from dit4dit_policy.evaluation.playback import BagSource, PlayStats, play
from dit4dit_policy.nodes.common import spin_until_shutdown
from dit4dit_policy.nodes.params import declare_from_yaml

NODE_NAME = "bag_player"
PARAMS_FILE = "bag_player.yaml"
STATUS_HISTORY = 10
STATUS_PERIOD_S = 1.0  # while playing, the figures so far are published this often
ACK_TIMEOUT_S = 2.0  # how long the end of playback waits for reliable subscribers to receive the tail


def message_class(msgtype: str) -> Any:
    """The rclpy message class of a rosbag2 type name such as sensor_msgs/msg/Image."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"no Python message class for {msgtype}: is its message package installed?") from e


class BagPlayerNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        p = self.p = declare_from_yaml(self, PARAMS_FILE, NODE_NAME)
        if not p["bag"]:
            raise ValueError("parameter 'bag' is empty: point it at a recorded episode folder")
        self.source = BagSource(p["bag"], p["topics"])
        self.timeline = self.source.timeline(p["speed"])
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        # A subscriber discovered late still gets the recent history of states, start included.
        history = QoSProfile(depth=STATUS_HISTORY, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._status_pub = self.create_publisher(String, p["status_topic"], history)
        self._pubs = {}
        self._reliable = [self._status_pub]
        for topic, info in self.source.topics.items():
            if info.msgtype in IMAGE_TYPES:
                qos = qos_profile_sensor_data  # as camera drivers publish
            elif topic in p["latched_topics"]:
                qos = latched
            else:
                qos = QoSProfile(depth=10)
            self._pubs[topic] = self.create_publisher(message_class(info.msgtype), topic, qos)
            if qos.reliability == ReliabilityPolicy.RELIABLE:
                self._reliable.append(self._pubs[topic])
        # (loop pass, start stamp, live figures) while playing; the lock keeps a periodic status from
        # overtaking the final one.
        self._playing: tuple[int, int, PlayStats] | None = None
        self._start_stamp: int | None = None
        self._lock = threading.Lock()
        self.create_timer(STATUS_PERIOD_S, self._report)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bag-player", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _status(self, state: str, **values: Any) -> None:
        with self._lock:
            if state != "playing":
                self._playing = None
            self._publish_status(state, **values)

    def _publish_status(self, state: str, **values: Any) -> None:
        fields = {
            "state": state,
            "bag": str(self.source.folder),
            "speed": self.timeline.speed,
            "loop": self.p["loop"],
            "bag_start_ns": self.timeline.bag_start,
            "period_ns": self.timeline.period,
            **values,
        }
        self._status_pub.publish(String(data=json.dumps(fields)))

    def _run(self) -> None:
        self._status("waiting")
        self._wait_for_subscribers()
        topics = self.source.topics
        try:
            stats = play(
                self.source.messages,
                self.timeline,
                {t: info.has_header for t, info in topics.items()},
                lambda topic, raw: self._pubs[topic].publish(raw),
                self._stop.wait,
                loop=self.p["loop"],
                on_pass=self._on_pass,
            )
        except Exception as e:
            if not rclpy.ok():  # publishing raced the shutdown (SIGTERM): that is the shutdown
                return
            # A damaged bag found mid-play: say so, then end the process.
            self.get_logger().error(f"playback failed: {e}")
            self._status("failed", error=str(e))
            rclpy.try_shutdown()
            return
        if stats.stopped:  # the process is shutting down; nothing more to say
            return
        lateness = stats.lateness_ms()
        self._status(
            "finished",
            start_stamp_ns=self._start_stamp,
            published=stats.published,
            passes=stats.passes,
            lateness_ms=lateness,
        )
        self.get_logger().info(f"finished: published {stats.published}, lateness {lateness} ms")
        # Let reliable subscribers receive the tail (and the status) before the process goes.
        for pub in self._reliable:
            pub.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))
        rclpy.try_shutdown()

    def _on_pass(self, loop_pass: int, start_stamp: int, stats: PlayStats) -> None:
        self._start_stamp = start_stamp
        with self._lock:
            self._playing = (loop_pass, start_stamp, stats)
        self._report()

    def _report(self) -> None:
        with self._lock:
            if self._playing is None:
                return
            loop_pass, start_stamp, stats = self._playing
            self._publish_status(
                "playing",
                loop_pass=loop_pass,
                start_stamp_ns=start_stamp,
                published=dict(stats.published),
                lateness_ms=stats.lateness_ms(),
            )

    def _wait_for_subscribers(self) -> None:
        deadline = time.monotonic() + self.p["wait_for_subscribers"]
        while not self._stop.is_set():
            lonely = [t for t, pub in self._pubs.items() if pub.get_subscription_count() == 0]
            if not lonely:
                return
            if time.monotonic() >= deadline:
                if self.p["wait_for_subscribers"] > 0:
                    self.get_logger().warning(f"no subscriber for {lonely}; playing anyway")
                return
            self._stop.wait(0.05)


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = BagPlayerNode()
    node.start()
    spin_until_shutdown(node, node.stop)


if __name__ == "__main__":
    main()
