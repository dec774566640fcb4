"""The teleoperation recorder: cameras, /joint_states, the operator's commands and the instruction
into one ROS 2 bag (MCAP) per episode, with episode.json beside it.

Services (config/recorder.yaml): start (std_srvs/Trigger), stop (std_srvs/SetBool: data = the
episode's success; the episode is kept), discard (std_srvs/Trigger: the episode is deleted).
Messages are taken serialized (no deserialising) and written by the episode's own thread through a
queue bounded in bytes (`max_queue_bytes`); what does not fit is dropped and counted. Each topic is
subscribed once a publisher appears, with the reliability and durability its publishers offer
(as `ros2 bag record` does): a reliable camera is recorded reliably, a latched instruction is
received even if it was published before the recorder started. On start-up the recorder makes
episodes a crash or kill left unfinished in output_dir readable (`recording.recover_episode`).

Status (diagnostic_msgs/DiagnosticStatus on topics.status, `status_rate` Hz): level OK, WARN once
the current episode dropped a message, ERROR when writing failed; message "idle", "recording
episode N" or "error: ..."; values: state, output_dir, disk_free_bytes, episodes_recorded (since
start-up) and, while recording: episode, folder, elapsed_s, frames (camera messages received),
received, written, dropped, flushed (messages handed to the operating system), queue_bytes,
queue_peak_bytes, max_queue_bytes, bag_bytes, error, and per recorded topic received.<topic> and
dropped.<topic>.
"""

from __future__ import annotations

import shutil
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from dit4dit_policy.nodes.common import spin_until_shutdown
from dit4dit_policy.nodes.params import declare_from_yaml
from dit4dit_policy.recording import (
    EpisodeInfo,
    EpisodeWriter,
    RecorderConfig,
    claim_output_dir,
    episode_folder,
    joint_table_hash,
    next_episode_index,
    recover_episode,
    remove_discarded,
    unfinished_episodes,
)
from dit4dit_policy.recording.episode import marker, utc_now

NODE_NAME = "recorder"
PARAMS_FILE = "recorder.yaml"
_MESSAGE_CLASSES = {
    "sensor_msgs/msg/Image": Image,
    "sensor_msgs/msg/CompressedImage": CompressedImage,
    "sensor_msgs/msg/JointState": JointState,
    "std_msgs/msg/String": String,
}
# Reader history (messages): 1 s of a 30 Hz camera, 2 s of 500 Hz joint states that the middleware
# holds while the executor is starved of CPU, before it replaces the oldest (lost, and uncounted).
_IMAGE_DEPTH, _DEPTH = 30, 1000
_DISCOVERY_PERIOD = 0.5


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        cfg = self.cfg = RecorderConfig.from_params(declare_from_yaml(self, PARAMS_FILE, NODE_NAME))
        self._lock = claim_output_dir(cfg.output_dir)
        self.table_hash = joint_table_hash(cfg.joint_table)
        self._recover_unfinished()
        self.topics = cfg.recorded_topics()
        self.episode: EpisodeWriter | None = None
        self.episodes_recorded = 0
        self._instruction: tuple[str, bytes] | None = None
        self._subscribed: set[str] = set()
        self._status_pub = self.create_publisher(DiagnosticStatus, cfg.status, 10)
        self._marker_pub = self.create_publisher(String, cfg.episode_marker, 10)
        self.create_service(Trigger, cfg.start_service, self._on_start)
        self.create_service(SetBool, cfg.stop_service, self._on_stop)
        self.create_service(Trigger, cfg.discard_service, self._on_discard)
        self._subscribe_offered()
        self.create_timer(_DISCOVERY_PERIOD, self._subscribe_offered)
        self.create_timer(1.0 / cfg.status_rate, self._publish_status)
        self.get_logger().info(
            f"recording {[t.name for t in self.topics]} to {cfg.output_dir}/episode_NNNNNN on {cfg.start_service}"
        )

    def _recover_unfinished(self) -> None:
        for leftover in remove_discarded(self.cfg.output_dir):
            self.get_logger().info(f"finished deleting {leftover} (a discard cut short)")
        for folder in unfinished_episodes(self.cfg.output_dir):
            try:
                info = recover_episode(folder)
            except (OSError, ValueError) as e:
                self.get_logger().error(f"cannot recover unfinished episode {folder}: {e}")
                continue
            counts = {topic: entry["messages"] for topic, entry in info.topics.items()}
            self.get_logger().warning(
                f"recovered interrupted episode {folder}: {counts}, "
                f"{info.recovery['bytes_discarded']} incomplete bytes discarded"
            )

    # Subscriptions ------------------------------------------------------------------------------
    def _subscribe_offered(self) -> None:
        """Subscribe each topic once it has publishers, matching what they offer."""
        for topic in self.topics:
            if topic.name in self._subscribed:
                continue
            offers = self.get_publishers_info_by_topic(topic.name)
            if not offers:
                continue
            reliable = all(o.qos_profile.reliability == ReliabilityPolicy.RELIABLE for o in offers)
            latched = all(o.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for o in offers)
            qos = QoSProfile(
                depth=_IMAGE_DEPTH if topic.name in self.cfg.images else _DEPTH,
                reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
            )
            self.create_subscription(
                _MESSAGE_CLASSES[topic.msgtype], topic.name, lambda data, t=topic.name: self._on_message(t, data),
                qos, raw=True,
            )
            self._subscribed.add(topic.name)
            self.get_logger().info(
                f"subscribed {topic.name} ({'reliable' if reliable else 'best effort'}"
                f"{', transient local' if latched else ''})"
            )

    def _on_message(self, topic: str, data: bytes) -> None:
        now = self.get_clock().now().nanoseconds
        if topic == self.cfg.instruction:
            text = deserialize_message(data, String).data
            self._instruction = (text, data)
            if self.episode is not None and not self.episode.info.task:
                self.episode.info.task = text
            self.get_logger().info(f"instruction: {text!r}")
        if self.episode is not None:
            self.episode.write(topic, now, data)

    # Services -----------------------------------------------------------------------------------
    def _on_start(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.episode is not None:
            response.success = False
            response.message = f"already recording episode {self.episode.info.episode} ({self.episode.folder})"
            return response
        cfg = self.cfg
        index = next_episode_index(cfg.output_dir)
        folder = episode_folder(cfg.output_dir, index)
        info = EpisodeInfo(
            episode=index,
            status="recording",
            task=self._instruction[0] if self._instruction else "",
            operator=cfg.operator,
            robot_variant=cfg.robot_variant,
            joint_table=cfg.joint_table,
            joint_table_hash=self.table_hash,
            started_at=utc_now(),
            start_time_ns=0,
        )
        # The latched instruction arrived before the episode: it opens the bag, right after the start marker.
        initial = [(cfg.instruction, self._instruction[1])] if self._instruction else []
        try:
            self.episode = EpisodeWriter(
                folder,
                self.topics,
                cfg.episode_marker,
                info,
                max_queue_bytes=cfg.max_queue_bytes,
                flush_period=cfg.flush_period,
                start_ns=self.get_clock().now().nanoseconds,
                initial=initial,
            )
        except (OSError, ValueError) as e:
            response.success = False
            response.message = f"cannot start episode {index}: {e}"
            self.get_logger().error(response.message)
            return response
        self._started = time.monotonic()
        self._marker_pub.publish(String(data=marker("start", info)))
        response.success = True
        response.message = f"recording episode {index} to {folder}"
        self.get_logger().info(f"{response.message} (task {info.task!r})")
        return response

    def _on_stop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if self.episode is None:
            response.success = False
            response.message = "not recording"
            return response
        episode, self.episode = self.episode, None
        try:
            info = episode.close(success=request.data, end_ns=self.get_clock().now().nanoseconds)
        except (OSError, ValueError) as e:
            response.success = False
            response.message = f"episode {episode.info.episode}: could not finish {episode.folder}: {e}"
            self.get_logger().error(f"{response.message}; the next start-up recovers it")
            return response
        self.episodes_recorded += 1
        self._marker_pub.publish(String(data=marker("stop", info)))
        counts = {topic: entry["messages"] for topic, entry in info.topics.items()}
        response.success = info.status == "complete"
        response.message = (
            f"episode {info.episode} {info.status} in {episode.folder}: {counts}, {info.dropped} dropped"
            + (f"; error: {info.error}" if info.error else "")
        )
        log = self.get_logger().info if response.success else self.get_logger().error
        log(response.message)
        return response

    def _on_discard(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.episode is None:
            response.success = False
            response.message = "not recording"
            return response
        episode, self.episode = self.episode, None
        episode.discard()
        self._marker_pub.publish(String(data=marker("discard", episode.info)))
        response.success = True
        response.message = f"episode {episode.info.episode} discarded ({episode.folder} deleted)"
        self.get_logger().info(response.message)
        return response

    # Status -------------------------------------------------------------------------------------
    def _publish_status(self) -> None:
        values: dict[str, object] = {
            "state": "idle",
            "output_dir": self.cfg.output_dir,
            "disk_free_bytes": shutil.disk_usage(self.cfg.output_dir).free,
            "episodes_recorded": self.episodes_recorded,
        }
        level, message = DiagnosticStatus.OK, "idle"
        episode = self.episode
        if episode is not None:
            s = episode.stats()
            dropped = sum(s.dropped.values())
            values.update(
                state="recording",
                episode=episode.info.episode,
                folder=episode.folder,
                elapsed_s=f"{time.monotonic() - self._started:.1f}",
                frames=sum(s.received[t] for t in self.cfg.images),
                received=sum(s.received.values()),
                written=sum(s.written.values()),
                dropped=dropped,
                flushed=s.flushed,
                queue_bytes=s.queue_bytes,
                queue_peak_bytes=s.queue_peak_bytes,
                max_queue_bytes=s.max_queue_bytes,
                bag_bytes=s.bag_bytes,
                error=s.error or "",
            )
            for topic in self.topics:
                values[f"received.{topic.name}"] = s.received[topic.name]
                values[f"dropped.{topic.name}"] = s.dropped[topic.name]
            message = f"recording episode {episode.info.episode}"
            if s.error:
                level, message = DiagnosticStatus.ERROR, f"error: {s.error}"
            elif dropped:
                level = DiagnosticStatus.WARN
        status = DiagnosticStatus(level=level, name=NODE_NAME, message=message)
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        self._status_pub.publish(status)

    def stop(self) -> None:
        """On shutdown: the episode in progress is finished as "interrupted" (the operator gave no verdict)."""
        if self.episode is None:
            return
        episode, self.episode = self.episode, None
        log = self.get_logger()
        try:
            episode.close(success=None, end_ns=self.get_clock().now().nanoseconds, status="interrupted")
        except (OSError, ValueError) as e:
            log.error(f"shutting down: could not finish {episode.folder} ({e}); the next start-up recovers it")
            return
        log.warning(f"shutting down: episode {episode.info.episode} kept as interrupted in {episode.folder}")


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    try:
        node = RecorderNode()
    except (ValueError, RuntimeError, OSError) as e:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {e}")
        rclpy.try_shutdown()
        return 1
    spin_until_shutdown(node, node.stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
