"""Reading one episode recorded by the teleop recorder: a rosbag2 (MCAP) folder plus `episode.json`.

Layout (the recorder's contract, `config/recorder.yaml`): `<root>/episode_NNNNNN/` holds the bag
(`metadata.yaml` + storage files) and `episode.json`. Topics: camera(s) as sensor_msgs/Image or
CompressedImage, `/joint_states` (all joints), `/teleop/joint_command` (the operator's commanded
targets: the action), `/dit4dit/instruction` (std_msgs/String, the task text) and
`/recorder/episode` (std_msgs/String JSON markers {"event": "start"|"stop", ...}, the first and
last message of a finished bag). The fields of episode.json are the recorder's
(`dit4dit_policy.recording.episode`); this reader keeps them as written.

Opening an episode reads everything except camera pixels; pixels are decoded on demand by
`BagEpisode.images` in a second pass over the bag, since an episode's raw frames can take gigabytes.
Every stream is put in stamp order with the node's rule for repeated stamps (`stamp_order`), and
stamped the way the policy node sees it: the header stamp, or the time the recorder received the
message where the header stamp is all zero (as the bridge stamps such commands on arrival).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dit4dit_policy.config import load_yaml
from dit4dit_policy.policy.sync import stamp_order
from dit4dit_policy.preprocessing import decode_compressed_image, raw_image_array

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
EPISODE_NAME = re.compile(r"episode_(\d+)")
METADATA_FILE = "episode.json"


class BagFormatError(ValueError):
    """A recorded episode is unreadable or does not match the recorder's contract."""


@dataclass(frozen=True)
class BagTopics:
    """The non-camera topics of a recording; defaults are the recorder's (`config/recorder.yaml`)."""

    joint_states: str = "/joint_states"
    command: str = "/teleop/joint_command"
    instruction: str = "/dit4dit/instruction"
    episode_marker: str = "/recorder/episode"

    @classmethod
    def from_recorder_config(cls, file: str = "recorder.yaml") -> BagTopics:
        try:
            topics = load_yaml(file)["recorder"]["ros__parameters"]["topics"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"{file}: no recorder.ros__parameters.topics section") from e
        return cls(
            joint_states=topics["joint_states"],
            command=topics["teleop_command"],
            instruction=topics["instruction"],
            episode_marker=topics["episode_marker"],
        )


@dataclass(frozen=True, eq=False)
class JointStream:
    """sensor_msgs/JointState positions, stamp-ordered: `positions[i]` in `names` order at `stamps[i]`."""

    topic: str
    names: tuple[str, ...]
    stamps: np.ndarray  # [N] seconds, strictly increasing
    positions: np.ndarray  # [N, J] float64 as recorded (NaN stays NaN: the caller decides)

    def select(self, names: Sequence[str]) -> np.ndarray:
        """Positions [N, len(names)] of the named joints, in that order."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise KeyError(f"{self.topic} has no joint(s) {missing}; it has {list(self.names)}")
        return self.positions[:, [self.names.index(n) for n in names]]


@dataclass(frozen=True, eq=False)
class CameraStream:
    topic: str
    msgtype: str  # one of IMAGE_TYPES
    stamps: np.ndarray  # [N] seconds, strictly increasing
    arrivals: np.ndarray  # [N] each frame's position in the topic's recorded order


@dataclass(frozen=True, eq=False)
class BagEpisode:
    folder: Path
    metadata: dict[str, Any]  # episode.json as written ({} when absent); its fields are the recorder's
    cameras: dict[str, CameraStream]  # by topic
    joint_states: JointStream
    commands: JointStream
    instructions: tuple[tuple[float, str], ...]  # (receive time, text), in time order
    markers: tuple[tuple[float, dict[str, Any]], ...]  # (receive time, marker), in time order

    @property
    def name(self) -> str:
        return self.folder.name

    def tasks_at(self, times: Sequence[float]) -> list[str]:
        """The instruction in force at each time, as the policy node would hold it: the newest one
        received by then; before the first, episode.json's `task` (the recorder's "instruction in
        effect when the episode started", which a transient-local publisher may have sent before
        the bag began), or failing that the first one received."""
        task = self.metadata.get("task")
        initial = task if isinstance(task, str) and task.strip() else None
        if initial is None and not self.instructions:
            raise BagFormatError(
                f"{self.folder}: episode {self.name} has no instruction messages and no 'task' in {METADATA_FILE}"
            )
        if not self.instructions:
            return [initial] * len(times)
        stamps = np.array([t for t, _ in self.instructions])
        which = np.searchsorted(stamps, np.asarray(times, dtype=np.float64), side="right") - 1
        first = initial if initial is not None else self.instructions[0][1]
        return [self.instructions[i][1] if i >= 0 else first for i in which]

    def images(self, topic: str, indices: Sequence[int] | None = None) -> Iterator[tuple[np.ndarray, str]]:
        """Decode frames of camera `topic` (positions in its stamp order; default all) as
        (uint8 HxWxC image, ROS encoding) pairs, in the order asked - as the policy node converts
        camera messages (CompressedImage comes out as rgb8)."""
        if topic not in self.cameras:
            raise KeyError(f"{self.folder}: no camera topic {topic!r}; cameras are {sorted(self.cameras)}")
        camera = self.cameras[topic]
        order = range(len(camera.stamps)) if indices is None else indices
        wanted = [int(camera.arrivals[i]) for i in order]
        if not wanted:
            return
        uses: dict[int, int] = {}
        for position in wanted:
            uses[position] = uses.get(position, 0) + 1
        decoded: dict[int, tuple[np.ndarray, str]] = {}
        served = 0
        with _open(self.folder) as reader:
            connections = [c for c in reader.connections if c.topic == topic]
            for position, (connection, _, raw) in enumerate(reader.messages(connections=connections)):
                if position in uses and position not in decoded:
                    message = _deserialize(reader, raw, connection, self.folder)
                    decoded[position] = _image(message, camera.msgtype, f"{self.folder}: {topic} frame {position}")
                # Yield in the order asked; a frame recorded out of order waits in `decoded` briefly.
                while served < len(wanted) and wanted[served] in decoded:
                    position_out = wanted[served]
                    yield decoded[position_out]
                    uses[position_out] -= 1
                    if not uses[position_out]:
                        del decoded[position_out]
                    served += 1
                if served == len(wanted):
                    return
        raise BagFormatError(f"{self.folder}: {topic} ended after {served} of {len(wanted)} requested frames")


def find_bag_episodes(root: str | Path) -> list[Path]:
    """The `episode_NNNNNN` bag folders under `root`, in episode-number order."""
    root = Path(root)
    if not root.is_dir():
        raise BagFormatError(f"{root}: not a folder")
    folders = [p for p in root.iterdir() if p.is_dir() and EPISODE_NAME.fullmatch(p.name)]
    folders.sort(key=lambda p: int(EPISODE_NAME.fullmatch(p.name).group(1)))
    if not folders:
        raise BagFormatError(f"{root}: no episode_NNNNNN folders")
    return folders


def read_bag_episode(folder: str | Path, topics: BagTopics | None = None) -> BagEpisode:
    """Read one recorded episode (all but camera pixels) and check it against the recorder's contract."""
    folder = Path(folder)
    topics = topics or BagTopics()
    if not (folder / "metadata.yaml").is_file():
        raise BagFormatError(f"{folder}: not a rosbag2 folder (no metadata.yaml) in episode {folder.name}")
    metadata = read_episode_metadata(folder)
    with _open(folder) as reader:
        by_topic: dict[str, list[Any]] = {}
        for connection in reader.connections:
            by_topic.setdefault(connection.topic, []).append(connection)
        for topic in (topics.joint_states, topics.command):
            if topic not in by_topic:
                raise BagFormatError(f"{folder}: episode {folder.name} has no {topic} messages")
        cameras = {
            topic: _camera(reader, topic, conns, folder)
            for topic, conns in sorted(by_topic.items())
            if conns[0].msgtype in IMAGE_TYPES
        }
        joint_states = _joint_stream(reader, topics.joint_states, by_topic[topics.joint_states], folder)
        commands = _joint_stream(reader, topics.command, by_topic[topics.command], folder)
        instructions = [
            (t, message.data) for t, message in _messages(reader, by_topic.get(topics.instruction, []), folder)
        ]
        markers = [
            (t, _marker(message.data, t, folder))
            for t, message in _messages(reader, by_topic.get(topics.episode_marker, []), folder)
        ]
    if not cameras:
        raise BagFormatError(f"{folder}: episode {folder.name} has no camera (sensor_msgs Image/CompressedImage) topic")
    return BagEpisode(
        folder=folder,
        metadata=metadata,
        cameras=cameras,
        joint_states=joint_states,
        commands=commands,
        instructions=tuple(sorted(instructions, key=lambda x: x[0])),
        markers=tuple(sorted(markers, key=lambda x: x[0])),
    )


def read_episode_metadata(folder: Path) -> dict[str, Any]:
    """episode.json as written ({} when absent)."""
    path = folder / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BagFormatError(f"{path}: invalid JSON in episode {folder.name}: {e}") from e
    if not isinstance(data, dict):
        raise BagFormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


@contextmanager
def _open(folder: Path) -> Iterator[Any]:
    """AnyReader over one bag folder, with any failure to open it reported against the folder."""
    from rosbags.highlevel import AnyReader  # heavy; only bag reading needs it

    try:
        reader = AnyReader([folder])
        reader.open()
    except Exception as e:  # rosbags raises many kinds for a damaged bag; all mean "unreadable"
        raise BagFormatError(f"{folder}: unreadable bag in episode {folder.name}: {e}") from e
    try:
        yield reader
    finally:
        reader.close()


def _deserialize(reader: Any, raw: Any, connection: Any, folder: Path) -> Any:
    try:
        return reader.deserialize(raw, connection.msgtype)
    except Exception as e:  # a truncated or mistyped message, whatever the deserialiser calls it
        raise BagFormatError(f"{folder}: cannot decode a {connection.msgtype} on {connection.topic}: {e}") from e


def _messages(reader: Any, connections: list[Any], folder: Path) -> Iterator[tuple[float, Any]]:
    """(stamp in seconds, message) in recorded order: the header stamp, or the receive time where
    there is no header or its stamp is zero."""
    if not connections:
        return
    try:
        for connection, log_time, raw in reader.messages(connections=connections):
            message = _deserialize(reader, raw, connection, folder)
            header = getattr(message, "header", None)
            stamp = header.stamp.sec + header.stamp.nanosec * 1e-9 if header is not None else 0.0
            yield (stamp if stamp != 0.0 else log_time * 1e-9), message
    except BagFormatError:
        raise
    except Exception as e:  # a damaged chunk surfaces while iterating
        raise BagFormatError(f"{folder}: unreadable bag in episode {folder.name}: {e}") from e


def _camera(reader: Any, topic: str, connections: list[Any], folder: Path) -> CameraStream:
    types = {c.msgtype for c in connections}
    if len(types) != 1:
        raise BagFormatError(f"{folder}: {topic} is recorded with several types {sorted(types)}")
    stamps = np.array([t for t, _ in _messages(reader, connections, folder)], dtype=np.float64)
    order = stamp_order(stamps)
    return CameraStream(topic=topic, msgtype=types.pop(), stamps=stamps[order], arrivals=order)


def _joint_stream(reader: Any, topic: str, connections: list[Any], folder: Path) -> JointStream:
    names: tuple[str, ...] | None = None
    stamps: list[float] = []
    rows: list[np.ndarray] = []
    for stamp, message in _messages(reader, connections, folder):
        where = f"{folder}: episode {folder.name}: {topic} message at {stamp:.6f} s"
        got = tuple(message.name)
        position = np.asarray(message.position, dtype=np.float64)
        if position.shape != (len(got),):
            raise BagFormatError(f"{where}: {len(got)} names but {position.size} positions")
        if len(set(got)) != len(got):
            raise BagFormatError(f"{where}: repeated joint names {got}")
        if names is None:
            names = got
        elif got != names:
            if set(got) != set(names):
                raise BagFormatError(f"{where}: joints {sorted(set(got) ^ set(names))} differ from the first message's")
            position = position[[got.index(n) for n in names]]
        stamps.append(stamp)
        rows.append(position)
    if names is None:
        raise BagFormatError(f"{folder}: episode {folder.name} has no {topic} messages")
    order = stamp_order(stamps)
    return JointStream(topic=topic, names=names, stamps=np.asarray(stamps)[order], positions=np.stack(rows)[order])


def _marker(text: str, stamp: float, folder: Path) -> dict[str, Any]:
    try:
        marker = json.loads(text)
    except json.JSONDecodeError as e:
        raise BagFormatError(f"{folder}: episode marker at {stamp:.6f} s is not JSON: {text!r}") from e
    if not isinstance(marker, dict):
        raise BagFormatError(f"{folder}: episode marker at {stamp:.6f} s is not a JSON object: {text!r}")
    return marker


def _image(message: Any, msgtype: str, where: str) -> tuple[np.ndarray, str]:
    try:
        if msgtype == "sensor_msgs/msg/Image":
            return (
                raw_image_array(message.data, message.height, message.width, message.step, message.encoding),
                message.encoding,
            )
        return decode_compressed_image(message.data), "rgb8"
    except ValueError as e:
        raise BagFormatError(f"{where}: {e}") from e
