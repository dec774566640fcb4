"""The bag player: its timing and restamping without ROS (a fake clock), the bag source on a
synthetic recording, and the node as a real process feeding a subscriber."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from dit4dit_policy.data.bag_episode import BagFormatError
from dit4dit_policy.data.synthetic import SyntheticEpisode, write_bag_episode
from dit4dit_policy.evaluation.playback import (
    BagSource,
    Timeline,
    header_stamp_ns,
    play,
    with_header_stamp,
)

STORE = get_typestore(Stores.ROS2_JAZZY)
T = STORE.types
START = 1_700_000_000 * 10**9  # ns: the bag's first log time
WALL = 1_800_000_000 * 10**9  # ns: the wall clock when playback starts


def joint_state(stamp_ns: int, position: float) -> bytes:
    sec, nanosec = divmod(stamp_ns, 10**9)
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id="x")
    msg = T["sensor_msgs/msg/JointState"](
        header=header, name=["a"], position=np.array([position]), velocity=np.array([]), effort=np.array([])
    )
    return bytes(STORE.serialize_cdr(msg, "sensor_msgs/msg/JointState"))


def text(data: str) -> bytes:
    return bytes(STORE.serialize_cdr(T["std_msgs/msg/String"](data=data), "std_msgs/msg/String"))


def decode(raw: bytes, msgtype: str = "sensor_msgs/msg/JointState"):
    return STORE.deserialize_cdr(raw, msgtype)


class FakeClock:
    """Monotonic time that only moves when the player waits (or a publish takes time)."""

    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def wait(self, seconds: float) -> bool:
        self.t += seconds
        return False


# Joint states every 10 ms stamped 2 ms before they were logged, one all-zero stamp, one text message.
MESSAGES = [
    *[("/joint_states", START + k * 10**7, joint_state(START + k * 10**7 - 2 * 10**6, 0.1 * k)) for k in range(5)],
    ("/joint_states", START + 5 * 10**7, joint_state(0, 0.5)),
    ("/dit4dit/instruction", START + 3 * 10**7, text("wave")),
]
MESSAGES.sort(key=lambda m: m[1])
HAS_HEADER = {"/joint_states": True, "/dit4dit/instruction": False}


def run(timeline: Timeline, clock: FakeClock, *, loop: bool = False, publish_cost: float = 0.0, stop_after=None):
    sent: list[tuple[float, str, bytes]] = []

    def publish(topic: str, raw: bytes) -> None:
        sent.append((clock(), topic, raw))
        clock.t += publish_cost if len(sent) == 1 else 0.0

    def wait(seconds: float) -> bool:
        clock.wait(seconds)
        return stop_after is not None and len(sent) >= stop_after

    def on_pass(loop_pass: int, start_stamp: int, stats) -> None:
        passes.append((loop_pass, start_stamp, sum(stats.published.values())))

    passes: list[tuple[int, int, int]] = []
    stats = play(
        lambda: MESSAGES,
        timeline,
        HAS_HEADER,
        publish,
        wait,
        loop=loop,
        clock=clock,
        stamp_clock=lambda: WALL,
        on_pass=on_pass,
    )
    return sent, stats, passes


@pytest.mark.parametrize("speed", [1.0, 2.0, 0.5])
def test_when_played_at_a_speed_expect_recorded_intervals_divided_by_it_and_stamps_moved_to_now(speed):
    timeline = Timeline.of_bag(START, START + 5 * 10**7, len(MESSAGES), speed)
    clock = FakeClock()
    sent, stats, passes = run(timeline, clock)

    assert [topic for _, topic, _ in sent] == [topic for topic, _, _ in MESSAGES]
    for (at, _, raw), (topic, log_time, recorded) in zip(sent, MESSAGES, strict=True):
        assert at == pytest.approx(100.0 + (log_time - START) * 1e-9 / speed, abs=1e-9)
        if topic == "/dit4dit/instruction":
            assert raw == recorded  # no header: the bytes go out as recorded
            continue
        stamp, was = header_stamp_ns(raw), header_stamp_ns(recorded)
        assert stamp == (0 if was == 0 else WALL + round((was - START) / speed))
        got, expected = decode(raw), decode(recorded)
        assert got.header.frame_id == "x" and list(got.position) == list(expected.position)
    assert stats.published == {"/joint_states": 6, "/dit4dit/instruction": 1}
    assert stats.passes == 1 and not stats.stopped and max(stats.lateness) == 0.0
    assert passes == [(0, WALL, 0)]


def test_when_a_publication_is_late_expect_only_that_one_late_and_the_rest_on_schedule():
    timeline = Timeline.of_bag(START, START + 5 * 10**7, len(MESSAGES), 1.0)
    clock = FakeClock()
    sent, stats, _ = run(timeline, clock, publish_cost=0.025)  # the first publish takes 25 ms
    due = [100.0 + (log_time - START) * 1e-9 for _, log_time, _ in MESSAGES]
    # Messages due within the 25 ms go out as soon as it is over, the rest exactly on time: no drift.
    expected = [due[0], *np.maximum(due[1:], 100.025)]
    np.testing.assert_allclose([at for at, _, _ in sent], expected, atol=1e-9)
    assert max(stats.lateness) == pytest.approx(0.015)  # the one due at 10 ms
    assert stats.lateness[-1] == 0.0


def test_when_looping_expect_each_pass_one_period_later_with_later_stamps_until_stopped():
    timeline = Timeline.of_bag(START, START + 5 * 10**7, len(MESSAGES), 2.0)
    assert timeline.period == 5 * 10**7 + 5 * 10**7 // (len(MESSAGES) - 1)
    clock = FakeClock()
    n = len(MESSAGES)
    sent, stats, passes = run(timeline, clock, loop=True, stop_after=2 * n + 3)

    assert stats.stopped and stats.passes == 3 and len(sent) == 2 * n + 3
    assert passes == [(0, WALL, 0), (1, WALL, n), (2, WALL, 2 * n)]  # each pass told with the figures so far
    first, second = sent[:n], sent[n : 2 * n]
    for (t1, topic1, raw1), (t2, topic2, raw2) in zip(first, second, strict=True):
        assert topic1 == topic2
        assert t2 - t1 == pytest.approx(timeline.period * 1e-9 / 2.0, abs=1e-9)
        if topic1 == "/joint_states" and header_stamp_ns(raw1):
            assert header_stamp_ns(raw2) - header_stamp_ns(raw1) == round(timeline.period / 2.0)
    stamps = [header_stamp_ns(raw) for _, topic, raw in sent if topic == "/joint_states" and header_stamp_ns(raw)]
    assert np.all(np.diff(stamps) > 0), "stamps went back across a loop"


def test_when_mapping_a_stamp_back_expect_the_recorded_time():
    timeline = Timeline.of_bag(START, START + 10**9, 11, 4.0)
    recorded = START + 700_000_000
    assert timeline.recorded_time(timeline.restamp(recorded, 0, WALL), WALL) == pytest.approx(0.7)


@pytest.mark.parametrize("speed", [0.0, -1.0, math.nan, math.inf, True, "2"])
def test_when_speed_is_not_a_positive_number_expect_a_clear_error(speed):
    with pytest.raises(ValueError, match="speed must be a finite number > 0"):
        Timeline.of_bag(START, START + 10**9, 10, speed)


def test_when_restamping_expect_either_byte_order_and_a_clear_error_for_what_is_not_plain_cdr():
    raw = joint_state(START, 1.0)
    assert header_stamp_ns(with_header_stamp(raw, WALL + 5)) == WALL + 5
    big = b"\x00\x00\x00\x00" + (12).to_bytes(4, "big") + (34).to_bytes(4, "big") + b"rest"
    assert header_stamp_ns(big) == 12 * 10**9 + 34
    assert with_header_stamp(big, 7 * 10**9 + 8)[4:12] == (7).to_bytes(4, "big") + (8).to_bytes(4, "big")
    with pytest.raises(ValueError, match="not a plain CDR message"):
        header_stamp_ns(b"\x00\x07" + raw[2:])
    with pytest.raises(ValueError, match="cannot hold a CDR header stamp"):
        header_stamp_ns(raw[:8])
    with pytest.raises(ValueError, match="does not fit"):
        with_header_stamp(raw, 2**31 * 10**9)


@pytest.fixture(scope="module")
def episode(tmp_path_factory) -> Path:
    return write_bag_episode(tmp_path_factory.mktemp("bag") / "episode_000000", SyntheticEpisode(duration=1.0))


def test_when_opening_a_recording_expect_its_topics_typed_and_messages_in_log_order(episode):
    source = BagSource(episode, ["/joint_states", "/camera/color/image_raw", "/dit4dit/instruction"])
    assert {t: (i.msgtype, i.has_header) for t, i in source.topics.items()} == {
        "/joint_states": ("sensor_msgs/msg/JointState", True),
        "/camera/color/image_raw": ("sensor_msgs/msg/Image", True),
        "/dit4dit/instruction": ("std_msgs/msg/String", False),
    }
    messages = list(source.messages())
    assert len(messages) == sum(i.count for i in source.topics.values())
    assert "/teleop/joint_command" not in {topic for topic, _, _ in messages}
    log_times = [t for _, t, _ in messages]
    assert log_times == sorted(log_times) and source.start <= log_times[0] and log_times[-1] <= source.end
    # The synthetic recorder logs each message at its header stamp.
    assert all(header_stamp_ns(raw) == t for topic, t, raw in messages if topic != "/dit4dit/instruction")


def test_when_a_topic_or_the_bag_is_missing_expect_errors_naming_them(episode, tmp_path):
    with pytest.raises(BagFormatError, match=r"no topic\(s\) \['/camera/left'\].*/camera/color/image_raw"):
        BagSource(episode, ["/joint_states", "/camera/left"])
    with pytest.raises(FileNotFoundError, match="not a rosbag2 folder"):
        BagSource(tmp_path / "nothing", ["/joint_states"])
    with pytest.raises(ValueError, match="no topics to play"):
        BagSource(episode, [])


@pytest.mark.ros
@pytest.mark.slow
def test_when_the_node_plays_a_bag_expect_every_message_restamped_at_speed_and_a_clean_exit(episode, tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from dit4dit_policy.runner import NodeSpec, ProcessGroup

    domain = random.randint(1, 100)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("bag_player_test", context=context)
    stamps: list[int] = []
    status: list[dict] = []
    node.create_subscription(
        JointState, "/joint_states", lambda m: stamps.append(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec), 50
    )
    instructions: list[str] = []
    latched = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(String, "/bag_player/status", lambda m: status.append(json.loads(m.data)), latched)
    node.create_subscription(String, "/dit4dit/instruction", lambda m: instructions.append(m.data), latched)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    overrides = {"bag": str(episode), "topics": ["/joint_states", "/dit4dit/instruction"], "speed": 2.0}
    try:
        with ProcessGroup(env={"ROS_DOMAIN_ID": str(domain)}, log_dir=tmp_path / "logs") as group:
            proc = group.start("player", NodeSpec("bag_player", params_files=["bag_player.yaml"], overrides=overrides))
            deadline = time.monotonic() + 60
            while not (status and status[-1]["state"] == "finished") and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            # The status can be taken before the last joint states still queued for this node: take
            # those too (a lost one still fails below, once the deadline passes).
            published = status[-1]["published"]["/joint_states"] if status else 0
            while len(stamps) < published and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            assert proc.wait(20) == 0, "the player did not exit by itself after the bag"
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)

    source = BagSource(episode, ["/joint_states"])
    recorded = np.array([header_stamp_ns(raw) for _, _, raw in source.messages()])
    assert status[-1]["published"] == {"/joint_states": recorded.size, "/dit4dit/instruction": 1}
    assert len(stamps) == recorded.size, "a reliable joint state was lost"
    assert instructions == ["put the cup on the plate"]
    start = status[-1]["start_stamp_ns"]
    expected = start + np.round((recorded - status[-1]["bag_start_ns"]) / 2.0).astype(np.int64)
    np.testing.assert_array_equal(np.array(stamps), expected)
