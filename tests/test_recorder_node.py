"""The recorder as a real process: this test process publishes cameras, joint states, operator
commands and the instruction, calls the services, and reads the bags back with rosbags' AnyReader
(as the dataset converter does)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from dit4dit_policy.nodes.bridge_client import wait_for
from dit4dit_policy.nodes.recorder_client import RecorderClient
from dit4dit_policy.recording import read_episode
from dit4dit_policy.runner import NodeSpec, ProcessGroup

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CAMS = ["/cam/left", "/cam/right"]
JOINTS, COMMAND = "/joint_states", "/teleop/joint_command"
INSTRUCTION, MARKER = "/dit4dit/instruction", "/recorder/episode"
CLASSES = {
    "sensor_msgs/msg/Image": Image,
    "sensor_msgs/msg/JointState": JointState,
    "std_msgs/msg/String": String,
}


def recorder_spec(output_dir: Path, **overrides) -> NodeSpec:
    params = {"output_dir": str(output_dir), "topics.images": CAMS, "status_rate": 10.0, "operator": "alice",
              **overrides}
    return NodeSpec("recorder", params_files=["recorder.yaml"], overrides=params)


@pytest.fixture
def rig(dds_domain: int, tmp_path: Path) -> Iterator[Callable[..., tuple[RecorderClient, ProcessGroup]]]:
    """Start a recorder (a second one: a second call) and a client publishing on its topics."""
    groups: list[ProcessGroup] = []
    clients: list[RecorderClient] = []

    def start(name: str = "recorder", **overrides) -> tuple[RecorderClient, ProcessGroup]:
        group = ProcessGroup(env={"ROS_DOMAIN_ID": str(dds_domain)}, log_dir=tmp_path / "logs")
        group.start(name, recorder_spec(tmp_path / "out", **overrides))
        groups.append(group)
        if not clients:
            clients.append(RecorderClient(dds_domain, images=CAMS))
        return clients[0], group

    yield start
    for client in clients:
        client.close()
    for group in groups:
        group.stop()


def read_bag(folder: Path) -> list[tuple[str, str, object]]:
    """(topic, type, rclpy message) of every message, in bag order."""
    with AnyReader([folder]) as reader:
        return [(c.topic, c.msgtype, deserialize_message(bytes(raw), CLASSES[c.msgtype]))
                for c, _, raw in reader.messages()]


def status_shows(client: RecorderClient, expected: dict[str, int]) -> Callable[[], bool]:
    return lambda: all(client.last_status().get(k) == str(v) for k, v in expected.items())


def test_when_an_episode_is_recorded_expect_what_was_published_in_its_bag_with_metadata_and_markers(rig, tmp_path):
    client, group = rig()
    client.instruct("put the cup on the plate")
    client.wait_for_recorder()
    assert client.stop(True).message == "not recording"
    started = client.start()
    assert started.success and started.message.endswith("episode_000000"), started.message
    assert not client.start().success, "a second start while recording must be refused"

    sent: dict[str, list] = {CAMS[0]: [], CAMS[1]: [], JOINTS: [], COMMAND: []}
    for k in range(40):
        joints = client.joints(k)
        client.joint_pub.publish(joints)
        sent[JOINTS].append(joints)
        if k % 4 == 0:
            command = client.joints(-k)
            client.command_pub.publish(command)
            sent[COMMAND].append(command)
            for i, cam in enumerate(CAMS):
                frame = client.image(48, 64, fill=(k + i) % 256)
                client.image_pubs[cam].publish(frame)
                sent[cam].append(frame)
        time.sleep(0.005)
    expected_counts = {f"received.{topic}": len(msgs) for topic, msgs in sent.items()}
    wait_for(status_shows(client, expected_counts), 20, f"the recorder's status to show {expected_counts}")
    status = client.last_status()
    assert status["state"] == "recording" and status["frames"] == "20" and status["dropped"] == "0"
    assert int(status["disk_free_bytes"]) > 0 and int(status["bag_bytes"]) > 0

    stopped = client.stop(True)
    assert stopped.success, stopped.message
    folder = tmp_path / "out" / "episode_000000"
    info = read_episode(folder)
    assert (info.status, info.success, info.operator) == ("complete", True, "alice")
    assert info.task == "put the cup on the plate"
    assert info.robot_variant == "g1_29dof" and len(info.joint_table_hash) == 64 and info.dropped == 0
    assert {t: e["messages"] for t, e in info.topics.items()} == {
        **{t: len(m) for t, m in sent.items()}, INSTRUCTION: 1, MARKER: 2
    }

    messages = read_bag(folder)
    for topic, msgs in sent.items():
        assert [m for t, _, m in messages if t == topic] == msgs, f"{topic}: what arrived differs from what was sent"
    types = {t: typ for t, typ, _ in messages}
    assert types == {**dict.fromkeys(CAMS, "sensor_msgs/msg/Image"), JOINTS: "sensor_msgs/msg/JointState",
                     COMMAND: "sensor_msgs/msg/JointState", INSTRUCTION: "std_msgs/msg/String",
                     MARKER: "std_msgs/msg/String"}
    assert messages[0][0] == MARKER and json.loads(messages[0][2].data)["event"] == "start"
    assert messages[1][0] == INSTRUCTION and messages[1][2].data == "put the cup on the plate"
    assert messages[-1][0] == MARKER and json.loads(messages[-1][2].data) == {
        "event": "stop", "episode": 0, "success": True, "status": "complete"
    }
    wait_for(lambda: len(client.markers) == 2, 5, "the start and stop markers on the marker topic")
    assert [json.loads(m)["event"] for m in client.markers] == ["start", "stop"]

    # A second episode, discarded: its folder goes, its index is used again.
    assert client.start().message.endswith("episode_000001")
    client.joint_pub.publish(client.joints(0))
    discarded = client.discard()
    assert discarded.success and "episode 1 discarded" in discarded.message
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["episode_000000"]
    assert client.discard().message == "not recording"
    wait_for(lambda: len(client.markers) == 4, 5, "the discard marker")
    assert json.loads(client.markers[-1]) == {"event": "discard", "episode": 1}
    assert client.start().message.endswith("episode_000001")
    assert client.stop(False).success
    assert read_episode(tmp_path / "out" / "episode_000001").success is False

    # SIGTERM mid-episode: the bag is finished properly, the episode marked interrupted (no verdict).
    assert client.start().message.endswith("episode_000002")
    client.joint_pub.publish(client.joints(7))
    wait_for(status_shows(client, {f"received.{JOINTS}": 1}), 20, "the joint state received")
    assert group.stop() == {"recorder": 0}
    last = read_episode(tmp_path / "out" / "episode_000002")
    assert (last.status, last.success, last.recovery) == ("interrupted", None, None)
    messages = read_bag(tmp_path / "out" / "episode_000002")
    assert [t for t, _, _ in messages] == [MARKER, INSTRUCTION, JOINTS, MARKER]
    assert json.loads(messages[-1][2].data)["status"] == "interrupted"
    assert read_episode(folder) == info, "a finished episode changed after the recorder stopped"


def test_when_frames_do_not_fit_the_queue_expect_them_dropped_counted_and_the_rest_recorded(rig, tmp_path):
    client, _ = rig(max_queue_bytes=40_000)  # a 120x160 rgb8 frame is 57.6 kB: never fits
    client.wait_for_recorder()
    assert client.start().success
    for k in range(10):
        client.image_pubs[CAMS[0]].publish(client.image(120, 160, fill=k))
        client.joint_pub.publish(client.joints(k))
        time.sleep(0.01)
    wait_for(status_shows(client, {f"received.{CAMS[0]}": 10, f"received.{JOINTS}": 10}), 20, "all received")
    status = client.last_status()
    assert status[f"dropped.{CAMS[0]}"] == "10" and status[f"dropped.{JOINTS}"] == "0"
    assert status["level"] == "1" and int(status["queue_peak_bytes"]) <= 40_000  # WARN
    assert client.stop(True).success
    info = read_episode(tmp_path / "out" / "episode_000000")
    assert info.topics[CAMS[0]] == {"type": "sensor_msgs/msg/Image", "messages": 0, "dropped": 10}
    assert info.topics[JOINTS]["messages"] == 10 and info.dropped == 10


def test_when_killed_mid_episode_expect_the_next_recorder_to_recover_what_was_flushed(rig, tmp_path):
    client, group = rig(flush_period=0.1)
    client.wait_for_recorder()
    assert client.start().success
    stop = threading.Event()
    streamer = threading.Thread(
        target=client.stream, kwargs={"seconds": 60, "image_size": (48, 64), "joint_hz": 200, "stop": stop}
    )
    streamer.start()
    try:
        wait_for(lambda: int(client.last_status().get("flushed", 0)) > 300, 30, "300 messages flushed")
        flushed = int(client.last_status()["flushed"])
        group.procs["recorder"].send_signal(signal.SIGKILL)
        group.procs["recorder"].wait(10)
    finally:
        stop.set()
        streamer.join()
    folder = tmp_path / "out" / "episode_000000"
    assert read_episode(folder).status == "recording" and not (folder / "metadata.yaml").exists()

    heard = len(client.status)
    _, second = rig("recorder_after_kill")
    wait_for(lambda: read_episode(folder).status == "interrupted", 30, "recovery on the next start-up")
    # The dead recorder's service still looks ready until its lease expires: talk once the new one is heard.
    wait_for(lambda: len(client.status) > heard + 2, 30, "status from the new recorder")
    second.check_alive()
    info = read_episode(folder)
    assert info.recovery["indexed"] is False and info.success is None  # the kill left it unfinished
    messages = read_bag(folder)
    assert len(messages) >= flushed, f"{len(messages)} messages recovered, {flushed} were on disk before the kill"
    assert {t: e["messages"] for t, e in info.topics.items()} == {
        t: sum(1 for m in messages if m[0] == t) for t in info.topics
    }
    joints = [m.position[0] for t, _, m in messages if t == JOINTS]
    assert joints == pytest.approx([k * 1e-3 for k in range(len(joints))]), "joint states lost or reordered"
    assert client.start().message.endswith("episode_000001"), "the recovered episode must not be overwritten"
    assert client.stop(True).success
    second.stop()
    log = (tmp_path / "logs" / "recorder_after_kill.log").read_text()
    assert "recovered interrupted episode" in log and "episode_000000" in log


def test_when_parameters_are_bad_or_output_dir_is_taken_expect_the_recorder_to_exit_saying_why(rig, tmp_path):
    _, group = rig("bad_transport", **{"topics.image_transport": "jpeg"})
    assert group.procs["bad_transport"].wait(30) != 0
    log = (tmp_path / "logs" / "bad_transport.log").read_text()
    assert "cannot start: parameter topics.image_transport must be raw or compressed, got 'jpeg'" in log

    client, _ = rig("first")
    client.wait_for_recorder()
    _, group = rig("second")
    assert group.procs["second"].wait(30) != 0
    log = (tmp_path / "logs" / "second.log").read_text()
    assert "is in use by another recorder (pid" in log
