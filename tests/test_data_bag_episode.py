"""Reading recorded episodes (rosbag2 MCAP + episode.json) into stamp-ordered arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dit4dit_policy.data.bag_episode import BagFormatError, find_bag_episodes, read_bag_episode
from dit4dit_policy.data.synthetic import (
    SyntheticEpisode,
    camera_stamps,
    commanded,
    frame_rgb,
    joint_positions,
    write_bag_episode,
)
from dit4dit_policy.joint_table import load_joint_table

CAMERA = "/camera/color/image_raw"


def test_when_reading_a_recording_expect_every_stream_as_recorded(tmp_path):
    spec = SyntheticEpisode(camera_jitter=0.002)
    episode = read_bag_episode(write_bag_episode(tmp_path / "episode_000003", spec))
    assert episode.name == "episode_000003"
    assert episode.metadata == spec.metadata
    assert list(episode.cameras) == [CAMERA]
    np.testing.assert_array_equal(episode.cameras[CAMERA].stamps, np.round(camera_stamps(spec) * 1e9) / 1e9)

    names = load_joint_table().names
    js = episode.joint_states
    assert js.names == names and js.positions.shape == (len(js.stamps), 29)
    assert np.all(np.diff(js.stamps) > 0)
    np.testing.assert_allclose(js.positions, joint_positions(js.stamps, names, spec.start), atol=1e-6)
    cmd = episode.commands
    np.testing.assert_allclose(cmd.positions, commanded(cmd.stamps, spec.command_joints, spec.start), atol=1e-6)
    right = [n for n in spec.command_joints if n.startswith("right_")]
    np.testing.assert_array_equal(cmd.select(right), cmd.positions[:, 7:])
    with pytest.raises(KeyError, match="left_knee_joint"):
        cmd.select(["left_knee_joint"])

    assert episode.instructions == ((spec.start, "put the cup on the plate"),)
    assert [m["event"] for _, m in episode.markers] == ["start", "stop"]
    assert [t for t, _ in episode.markers] == [episode.cameras[CAMERA].stamps[0], episode.cameras[CAMERA].stamps[-1]]


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "rgba8", "mono8", "png"])
def test_when_decoding_frames_expect_the_pixels_and_encoding_the_node_would_get(tmp_path, encoding):
    spec = SyntheticEpisode(duration=0.5, encoding=encoding, width=10, height=6)
    episode = read_bag_episode(write_bag_episode(tmp_path / "episode_000000", spec))
    asked = [3, 0, 3, 7]  # any order, repeats allowed
    got = list(episode.images(CAMERA, asked))
    assert len(got) == 4
    for index, (image, got_encoding) in zip(asked, got, strict=True):
        rgb = frame_rgb(index, 6, 10)
        expected = {
            "bgr8": rgb[..., ::-1],
            "rgb8": rgb,
            "rgba8": np.concatenate([rgb, np.full_like(rgb[..., :1], 255)], axis=-1),
            "mono8": rgb[..., 2:3],
            "png": rgb,
        }[encoding]
        assert got_encoding == ("rgb8" if encoding == "png" else encoding)
        np.testing.assert_array_equal(image, expected)
    assert len(list(episode.images(CAMERA))) == len(episode.cameras[CAMERA].stamps)
    with pytest.raises(KeyError, match="/camera/other"):
        next(episode.images("/camera/other"))


def _write_bag(folder, messages):
    """A bag of hand-made JointState/String messages: (topic, receive time s, header stamp s or None, payload)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    t = store.types
    with Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for topic, receive, stamp, payload in messages:
            if isinstance(payload, str):
                msgtype, message = "std_msgs/msg/String", t["std_msgs/msg/String"](data=payload)
            elif isinstance(payload, np.ndarray):
                msgtype = "sensor_msgs/msg/Image"
                message = t["sensor_msgs/msg/Image"](
                    header=t["std_msgs/msg/Header"](
                        stamp=t["builtin_interfaces/msg/Time"](sec=int(stamp), nanosec=round(stamp % 1 * 1e9)),
                        frame_id="",
                    ),
                    height=1,
                    width=1,
                    encoding="rgb8",
                    is_bigendian=0,
                    step=3,
                    data=payload,
                )
            else:
                names, positions = payload
                ns = round(stamp * 1e9) if stamp is not None else 0
                msgtype = "sensor_msgs/msg/JointState"
                message = t[msgtype](
                    header=t["std_msgs/msg/Header"](
                        stamp=t["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9), frame_id=""
                    ),
                    name=names,
                    position=np.asarray(positions, dtype=np.float64),
                    velocity=np.array([]),
                    effort=np.array([]),
                )
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(connections[topic], round(receive * 1e9), store.serialize_cdr(message, msgtype))
    return folder


def _pixel(value):
    return np.full(3, value, dtype=np.uint8)


def test_when_stamps_arrive_out_of_order_repeated_or_zero_expect_the_nodes_order_and_rules(tmp_path):
    folder = _write_bag(
        tmp_path / "episode_000000",
        [
            ("/camera/color/image_raw", 1.0, 2.0, _pixel(20)),
            ("/camera/color/image_raw", 1.1, 1.5, _pixel(15)),  # arrives late
            ("/joint_states", 1.0, 1.0, (["a", "b"], [1.0, 2.0])),
            ("/joint_states", 1.1, 1.0, (["b", "a"], [20.0, 10.0])),  # same stamp, other name order: replaces
            ("/joint_states", 1.2, 0.9, (["a", "b"], [0.0, 0.0])),
            ("/teleop/joint_command", 3.0, None, (["a"], [5.0])),  # zero header stamp: receive time
            ("/dit4dit/instruction", 2.5, None, "later task"),
            ("/dit4dit/instruction", 0.5, None, "first task"),
        ],
    )
    episode = read_bag_episode(folder)
    js = episode.joint_states
    assert js.stamps.tolist() == [0.9, 1.0]
    assert js.positions.tolist() == [[0.0, 0.0], [10.0, 20.0]]
    assert episode.commands.stamps.tolist() == [3.0]
    assert episode.cameras[CAMERA].stamps.tolist() == [1.5, 2.0]
    assert [int(image[0, 0, 0]) for image, _ in episode.images(CAMERA)] == [15, 20]
    assert (
        episode.tasks_at([0.0, 0.5, 2.4, 2.5, 9.0]) == ["first task", "first task", "first task"] + ["later task"] * 2
    )
    assert episode.markers == ()


def test_when_the_first_instruction_comes_late_expect_the_metadata_task_before_it(tmp_path):
    spec = SyntheticEpisode(duration=1.0, instructions=((0.5, "later"),), metadata={"task": "in effect at start"})
    episode = read_bag_episode(write_bag_episode(tmp_path / "episode_000000", spec))
    assert episode.tasks_at([spec.start, spec.start + 0.49, spec.start + 0.5]) == ["in effect at start"] * 2 + ["later"]


def test_when_no_instruction_expect_the_metadata_task_or_an_error(tmp_path):
    spec = SyntheticEpisode(duration=0.2, instructions=(), metadata={"task": "stack the cups"})
    episode = read_bag_episode(write_bag_episode(tmp_path / "episode_000000", spec))
    assert episode.tasks_at([spec.start, spec.start + 1]) == ["stack the cups"] * 2
    spec = SyntheticEpisode(duration=0.2, instructions=(), metadata={"operator": "x"})
    episode = read_bag_episode(write_bag_episode(tmp_path / "episode_000001", spec))
    with pytest.raises(BagFormatError, match="episode_000001 has no instruction messages and no 'task'"):
        episode.tasks_at([spec.start])


def test_when_episode_json_is_absent_expect_empty_metadata_and_when_invalid_expect_error(tmp_path):
    folder = write_bag_episode(tmp_path / "episode_000000", SyntheticEpisode(duration=0.2))
    (folder / "episode.json").unlink()
    assert read_bag_episode(folder).metadata == {}
    (folder / "episode.json").write_text("{not json")
    with pytest.raises(BagFormatError, match=r"episode_000000/episode.json: invalid JSON"):
        read_bag_episode(folder)
    (folder / "episode.json").write_text(json.dumps([1, 2]))
    with pytest.raises(BagFormatError, match="expected a JSON object"):
        read_bag_episode(folder)


def test_when_bag_is_truncated_expect_error_naming_the_episode(tmp_path):
    folder = write_bag_episode(tmp_path / "episode_000007", SyntheticEpisode(duration=0.5))
    mcap = next(folder.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(BagFormatError, match="episode_000007"):
        read_bag_episode(folder)


@pytest.mark.parametrize(
    "messages,match",
    [
        ([("/joint_states", 1.0, 1.0, (["a"], [1.0]))], "no /teleop/joint_command messages"),
        (
            [("/joint_states", 1.0, 1.0, (["a"], [1.0])), ("/teleop/joint_command", 1.0, 1.0, (["a"], [1.0]))],
            "no camera",
        ),
        (
            [
                ("/camera/color/image_raw", 1.0, 1.0, _pixel(0)),
                ("/joint_states", 1.0, 1.0, (["a", "b"], [1.0])),
                ("/teleop/joint_command", 1.0, 1.0, (["a"], [1.0])),
            ],
            r"/joint_states message at 1.000000 s: 2 names but 1 positions",
        ),
        (
            [
                ("/camera/color/image_raw", 1.0, 1.0, _pixel(0)),
                ("/joint_states", 1.0, 1.0, (["a"], [1.0])),
                ("/joint_states", 1.1, 1.1, (["c"], [1.0])),
                ("/teleop/joint_command", 1.0, 1.0, (["a"], [1.0])),
            ],
            r"joints \['a', 'c'\] differ from the first message's",
        ),
        (
            [
                ("/camera/color/image_raw", 1.0, 1.0, _pixel(0)),
                ("/joint_states", 1.0, 1.0, (["a"], [1.0])),
                ("/teleop/joint_command", 1.0, 1.0, (["a"], [1.0])),
                ("/recorder/episode", 1.0, None, "start"),
            ],
            "episode marker at 1.000000 s is not JSON",
        ),
    ],
)
def test_when_recording_breaks_the_contract_expect_error_naming_episode_and_what(tmp_path, messages, match):
    folder = _write_bag(tmp_path / "episode_000004", messages)
    with pytest.raises(BagFormatError, match=match) as error:
        read_bag_episode(folder)
    assert "episode_000004" in str(error.value)


def test_when_listing_episodes_expect_numeric_order_and_errors_for_empty_or_plain_folders(tmp_path):
    for n in (10, 2):
        write_bag_episode(tmp_path / f"episode_{n:06d}", SyntheticEpisode(duration=0.1))
    (tmp_path / "notes").mkdir()
    assert [p.name for p in find_bag_episodes(tmp_path)] == ["episode_000002", "episode_000010"]
    with pytest.raises(BagFormatError, match="no episode_NNNNNN folders"):
        find_bag_episodes(tmp_path / "notes")
    with pytest.raises(BagFormatError, match="not a rosbag2 folder"):
        read_bag_episode(tmp_path / "notes")
