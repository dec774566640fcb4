"""Synthetic recordings in the teleop recorder's layout, with known content: for tests and benchmarks
without a robot.

Joint positions and commands are known functions of time (`joint_positions`, `commanded`) and each
frame's brightness encodes its index (`frame_rgb`, `frame_level`), so whatever a conversion makes
of a recording can be checked against an independent oracle.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dit4dit_policy.data.bag_episode import METADATA_FILE, BagTopics
from dit4dit_policy.joint_table import load_joint_table

ARM_JOINTS = tuple(j.name for j in load_joint_table().in_groups("arm"))
COMPRESSED_FORMATS = ("jpeg", "png")


@dataclass(frozen=True)
class SyntheticEpisode:
    duration: float = 2.0  # seconds of camera frames
    start: float = 1_700_000_000.0  # first camera stamp; Unix-sized, as real stamps are
    camera_rate: float = 30.0
    joint_rate: float = 100.0
    command_rate: float = 50.0
    width: int = 32
    height: int = 24
    encoding: str = "bgr8"  # a ROS raw encoding (sensor_msgs/Image) or jpeg/png (CompressedImage)
    camera_jitter: float = 0.0  # camera stamps alternate +- this (s)
    noise: int = 0  # sensor-like noise: each pixel value moves by up to +- this (seeded per frame)
    camera_topic: str = "/camera/color/image_raw"
    command_joints: tuple[str, ...] = ARM_JOINTS
    instructions: tuple[tuple[float, str], ...] = ((0.0, "put the cup on the plate"),)  # (s after start, text)
    markers: bool = True  # the recorder's start/stop markers at the first and last camera stamp
    metadata: dict[str, Any] = field(default_factory=lambda: {"task": "put the cup on the plate", "success": True})


def joint_positions(t: np.ndarray, names: tuple[str, ...], start: float) -> np.ndarray:
    """The measured joint angles [N, J] at times t: slow sines, a different phase per joint."""
    rel = np.asarray(t, dtype=np.float64)[:, None] - start
    phase = 0.3 * np.arange(len(names))
    return 0.4 * np.sin(0.7 * rel + phase)


def commanded(t: np.ndarray, names: tuple[str, ...], start: float) -> np.ndarray:
    """The operator's commanded targets [N, K] at times t: ramps, so that linear interpolation
    between command messages reproduces them exactly."""
    rel = np.asarray(t, dtype=np.float64)[:, None] - start
    return 0.05 * np.arange(len(names)) + 0.2 * (1 + 0.1 * np.arange(len(names))) * rel


def frame_level(index: int) -> int:
    """The blue level of frame `index`: 6 grey levels apart from its neighbours, so a frame can be
    told from the next one after lossy video coding."""
    return 30 + 6 * (index % 32)


def frame_rgb(index: int, height: int, width: int) -> np.ndarray:
    """Frame `index` as uint8 HxWx3 RGB: smooth gradients in red and green, blue = frame_level."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = 40 + (160 * x) // max(width - 1, 1)
    rgb[..., 1] = 40 + (160 * y) // max(height - 1, 1)
    rgb[..., 2] = frame_level(index)
    return rgb


def camera_stamps(spec: SyntheticEpisode) -> np.ndarray:
    n = int(math.floor(spec.duration * spec.camera_rate)) + 1
    jitter = np.where(np.arange(n) % 2, spec.camera_jitter, -spec.camera_jitter)
    return spec.start + np.arange(n) / spec.camera_rate + jitter


def _covering(spec: SyntheticEpisode, rate: float) -> np.ndarray:
    """Stamps at `rate` covering the camera's span with a margin, as free-running streams do."""
    margin = 0.25
    n = int(math.floor((spec.duration + 2 * margin) * rate)) + 1
    return spec.start - margin + np.arange(n) / rate


def joint_stamps(spec: SyntheticEpisode) -> np.ndarray:
    return _covering(spec, spec.joint_rate)


def command_stamps(spec: SyntheticEpisode) -> np.ndarray:
    return _covering(spec, spec.command_rate)


def image_type(spec: SyntheticEpisode) -> str:
    return "sensor_msgs/msg/CompressedImage" if spec.encoding in COMPRESSED_FORMATS else "sensor_msgs/msg/Image"


def topic_types(spec: SyntheticEpisode) -> dict[str, str]:
    """The episode's topics and their message types (the marker topic only with `spec.markers`)."""
    topics = BagTopics()
    types = {
        spec.camera_topic: image_type(spec),
        topics.joint_states: "sensor_msgs/msg/JointState",
        topics.command: "sensor_msgs/msg/JointState",
        topics.instruction: "std_msgs/msg/String",
    }
    if spec.markers:
        types[topics.episode_marker] = "std_msgs/msg/String"
    return types


def recorded_messages(spec: SyntheticEpisode) -> Iterator[tuple[int, str, bytes]]:
    """(receive time in ns, topic, CDR bytes) of every message, in receive order."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    t = store.types
    topics = BagTopics()
    joint_names = load_joint_table().names
    frames = camera_stamps(spec)
    joints = joint_stamps(spec)
    commands = command_stamps(spec)
    q = joint_positions(joints, joint_names, spec.start)
    c = commanded(commands, spec.command_joints, spec.start)

    def header(stamp: float) -> Any:
        ns = int(round(stamp * 1e9))
        return t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9), frame_id=""
        )

    def joint_state(stamp: float, names: tuple[str, ...], values: np.ndarray) -> Any:
        return t["sensor_msgs/msg/JointState"](
            header=header(stamp), name=list(names), position=values, velocity=np.array([]), effort=np.array([])
        )

    def image(i: int, stamp: float) -> Any:
        rgb = frame_rgb(i, spec.height, spec.width)
        if spec.noise:
            jitter = np.random.default_rng(i).integers(-spec.noise, spec.noise + 1, rgb.shape)
            rgb = np.clip(rgb + jitter, 0, 255).astype(np.uint8)
        if spec.encoding in COMPRESSED_FORMATS:
            from PIL import Image

            buffer = io.BytesIO()
            Image.fromarray(rgb).save(buffer, format=spec.encoding.upper(), quality=95)
            data = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
            return t["sensor_msgs/msg/CompressedImage"](header=header(stamp), format=spec.encoding, data=data)
        pixels = {
            "rgb8": rgb,
            "bgr8": rgb[..., ::-1],
            "rgba8": np.concatenate([rgb, np.full_like(rgb[..., :1], 255)], axis=-1),
            "mono8": rgb[..., 2:3],
        }[spec.encoding]
        channels = pixels.shape[-1]
        return t["sensor_msgs/msg/Image"](
            header=header(stamp),
            height=spec.height,
            width=spec.width,
            encoding=spec.encoding,
            is_bigendian=0,
            step=spec.width * channels,
            data=np.ascontiguousarray(pixels).reshape(-1),
        )

    string = t["std_msgs/msg/String"]
    events: list[tuple[float, str, Any]] = []  # (receive time, topic, how to build the message)
    events += [(s, spec.camera_topic, ("image", i, s)) for i, s in enumerate(frames)]
    events += [(s, topics.joint_states, ("joints", i, s)) for i, s in enumerate(joints)]
    events += [(s, topics.command, ("command", i, s)) for i, s in enumerate(commands)]
    events += [(spec.start + dt, topics.instruction, ("text", text)) for dt, text in spec.instructions]
    if spec.markers:
        events += [(frames[0], topics.episode_marker, ("text", json.dumps({"event": "start", "episode": 0})))]
        events += [(frames[-1], topics.episode_marker, ("text", json.dumps({"event": "stop", "episode": 0})))]
    events.sort(key=lambda e: e[0])
    types = topic_types(spec)
    for receive_time, topic, what in events:
        kind = what[0]
        if kind == "image":
            message = image(what[1], what[2])
        elif kind == "joints":
            message = joint_state(what[2], joint_names, q[what[1]])
        elif kind == "command":
            message = joint_state(what[2], spec.command_joints, c[what[1]])
        else:
            message = string(data=what[1])
        yield int(round(receive_time * 1e9)), topic, bytes(store.serialize_cdr(message, types[topic]))


def write_bag_episode(folder: str | Path, spec: SyntheticEpisode = SyntheticEpisode()) -> Path:
    """Write one episode folder (an MCAP rosbag2 + episode.json) the way the recorder lays it out."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    folder = Path(folder)
    store = get_typestore(Stores.ROS2_JAZZY)
    with Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {
            topic: writer.add_connection(topic, kind, typestore=store) for topic, kind in topic_types(spec).items()
        }
        for receive_ns, topic, data in recorded_messages(spec):
            writer.write(connections[topic], receive_ns, data)
    (folder / METADATA_FILE).write_text(json.dumps(spec.metadata, indent=2))
    return folder
