"""Episode folders and their metadata (`episode.json`).

Layout: `<output_dir>/episode_NNNNNN/` (NNNNNN = the episode index, zero-padded to 6 digits) is a
rosbag2 folder: `metadata.yaml` and `episode_NNNNNN.mcap`, readable by
`rosbags.highlevel.AnyReader([folder])`, plus `episode.json`. A folder without `metadata.yaml`, or
whose `episode.json` still says "recording", is unfinished: `recording.recover_episode` makes it
readable. Indices count up from the highest folder present; a discarded episode's index is reused.

episode.json (a UTF-8 JSON object, written atomically: a reader never sees half a file):

- `format` (int): version of this layout, 1.
- `episode` (int): the NNNNNN of the folder.
- `status` (str): "recording" (being written, or the recorder died writing it and it was not yet
  recovered), "complete" (stopped by the operator) or "interrupted" (the recorder shut down,
  crashed, was killed or failed to write before the operator stopped it; the bag holds what had
  reached the disk).
- `success` (bool or null): the operator's verdict given to the stop service; null unless complete.
- `task` (str): the instruction in effect when the episode started, else the first received
  during it; "" if none. Every instruction received is also in the bag.
- `operator` (str): the recorder's `operator` parameter.
- `robot_variant` (str): the joint table variant, e.g. "g1_29dof".
- `joint_table` (str): the joint table file name, e.g. "g1_29dof.yaml".
- `joint_table_hash` (str): sha256 (hex) of that file's bytes.
- `started_at` (str): wall-clock start, ISO 8601 UTC.
- `start_time_ns` (int): bag time (ns) of the start marker, the episode's first message.
- `end_time_ns` (int or null): bag time (ns) of its last message; null while recording.
- `duration_s` (float or null): (end_time_ns - start_time_ns) / 1e9.
- `topics` (object): per topic in the bag, {"type": e.g. "sensor_msgs/msg/Image", "messages":
  count in the bag, "dropped": received but not written (queue full, or writing had failed); null
  after recovery, where it is unknown}.
- `dropped` (int or null): the sum of the topics' `dropped`.
- `error` (str or null): why writing stopped early (e.g. the disk was full).
- `recovery` (object or null): set by recovery: {"recovered_at": ISO 8601 UTC,
  "bytes_discarded": an incomplete tail cut from the .mcap, "indexed": false when the .mcap has
  no summary section (readers scan it linearly)}.

Bag time is the recorder's receive time (its ROS clock: `use_sim_time` honoured), never
decreasing within a bag. The episode marker topic (`std_msgs/msg/String`) holds JSON events:
{"event": "start", "episode": N, "task": ..., "operator": ...} first and
{"event": "stop", "episode": N, "success": bool or null, "status": ...} last (absent from a bag
cut short). The recorder also publishes {"event": "discard", "episode": N} there when it deletes
an episode.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from dit4dit_policy.config import resolve

FORMAT = 1
EPISODE_JSON = "episode.json"
_FOLDER = re.compile(r"episode_(\d{6})")
STATUSES = ("recording", "complete", "interrupted")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class EpisodeInfo:
    """The contents of episode.json (see the module docstring for each field)."""

    episode: int
    status: str
    task: str
    operator: str
    robot_variant: str
    joint_table: str
    joint_table_hash: str
    started_at: str
    start_time_ns: int
    success: bool | None = None
    end_time_ns: int | None = None
    duration_s: float | None = None
    topics: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: int | None = 0
    error: str | None = None
    recovery: dict[str, Any] | None = None
    format: int = FORMAT

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"episode status must be one of {STATUSES}, got {self.status!r}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "episode.json") -> EpisodeInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as e:
            raise ValueError(f"{where}: {e}") from e


def episode_folder(output_dir: Path, index: int) -> Path:
    return Path(output_dir) / f"episode_{index:06d}"


def episode_index(folder: Path) -> int | None:
    """NNNNNN of an `episode_NNNNNN` folder name, None for any other name."""
    match = _FOLDER.fullmatch(Path(folder).name)
    return int(match.group(1)) if match else None


def episode_folders(output_dir: Path) -> list[Path]:
    """The episode folders in `output_dir`, by index."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and episode_index(p) is not None]
    return sorted(found, key=lambda p: episode_index(p))


def next_episode_index(output_dir: Path) -> int:
    folders = episode_folders(output_dir)
    return episode_index(folders[-1]) + 1 if folders else 0


def claim_output_dir(output_dir: Path) -> IO[str]:
    """Lock `output_dir` for this process until it exits, however it exits (keep the returned file
    open): a second recorder there would take the episode the first is writing for a crashed one."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = (output_dir / ".recorder.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        owner = lock.read().strip()
        lock.close()
        raise RuntimeError(f"output_dir {output_dir} is in use by another recorder ({owner})") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}\n")
    lock.flush()
    return lock


def read_episode(folder: Path) -> EpisodeInfo:
    path = Path(folder) / EPISODE_JSON
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return EpisodeInfo.from_dict(data, str(path))


def write_episode(folder: Path, info: EpisodeInfo) -> None:
    """Write episode.json atomically (temporary file, fsync, rename)."""
    path = Path(folder) / EPISODE_JSON
    tmp = path.with_name(f".{EPISODE_JSON}.tmp")
    with tmp.open("w") as f:
        f.write(info.to_json())
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def joint_table_hash(joint_table: str) -> str:
    """sha256 (hex) of the joint table file's bytes (a bare name is looked up in config/)."""
    return hashlib.sha256(resolve(joint_table).read_bytes()).hexdigest()


def marker(event: str, info: EpisodeInfo) -> str:
    """The JSON text of an episode marker (start, stop or discard)."""
    body: dict[str, Any] = {"event": event, "episode": info.episode}
    if event == "start":
        body.update(task=info.task, operator=info.operator)
    elif event == "stop":
        body.update(success=info.success, status=info.status)
    return json.dumps(body)
