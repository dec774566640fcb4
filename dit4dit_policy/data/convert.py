"""Recorded episodes (teleop recorder bags, or Unitree XR tool folders) -> a LeRobot v2.1 dataset.

Every episode is resampled with `align_recording` (dit4dit_policy/policy/sync.py): rows on a grid
at the dataset rate, each frame paired with the nearest joint state within the slop exactly as the
policy node pairs them, and each row's action the commanded target one period later (the time the
chunk executor gives a chunk's first action). State and action are the configured joints, by name
(the policy node's `state_joints` and `action_joints`), so a model trained on the dataset reads
and commands exactly the joints the node serves. Frames are stored as recorded (RGB at the
camera's resolution); resizing happens in `dit4dit_policy.preprocessing`, for training and serving
alike.

A conversion writes into a staging folder and renames it into place when every episode has
converted; an existing dataset is replaced only with `force`, and a folder that is not a dataset
never is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dit4dit_policy.config import load_yaml
from dit4dit_policy.data.bag_episode import find_bag_episodes, read_bag_episode, read_episode_metadata
from dit4dit_policy.data.lerobot import DatasetWriter, video_key
from dit4dit_policy.data.xr_import import GROUP_ORDER, XrEpisode, XrFormatError, read_xr_episodes
from dit4dit_policy.files import staged_folder
from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.policy.sync import AlignmentGap, align_recording, interpolate
from dit4dit_policy.preprocessing import images_to_rgb

ROBOT_TYPE = "unitree_g1"


class ConversionError(ValueError):
    """An episode cannot be converted; the message names the episode folder and why."""


@dataclass(frozen=True)
class ConversionSpec:
    state_joints: tuple[str, ...]
    action_joints: tuple[str, ...]
    rate: float  # dataset rows per second: 1 / the policy's action period
    slop: float  # largest |frame stamp - joint state stamp| that pairs them (the node's slop)
    camera: str | None  # bag camera topic or XR camera name; None: the only (bags) or first (XR) camera

    def __post_init__(self) -> None:
        for name in ("state_joints", "action_joints"):
            joints = getattr(self, name)
            if not joints or len(set(joints)) != len(joints):
                raise ValueError(f"{name} must be a non-empty list of distinct names, got {list(joints)}")
        if not math.isfinite(self.rate) or self.rate <= 0:
            raise ValueError(f"rate must be a positive number of Hz, got {self.rate}")
        if not math.isfinite(self.slop) or self.slop < 0:
            raise ValueError(f"slop must be >= 0 s, got {self.slop}")

    @classmethod
    def from_policy_params(
        cls, file: str | Path = "policy.yaml", *, rate: float | None = None, camera: str | None = None
    ) -> ConversionSpec:
        """Joints, slop, camera topic and rate (1 / action_period) from the policy node's parameters,
        so the dataset is made of what the node will serve; `rate` and `camera` override."""
        try:
            params = load_yaml(file)["policy_node"]["ros__parameters"]
            return cls(
                state_joints=tuple(params["state_joints"]),
                action_joints=tuple(params["action_joints"]),
                rate=rate if rate is not None else round(1.0 / params["action_period"], 9),
                slop=float(params["slop"]),
                camera=camera if camera is not None else params["topics"]["image"],
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"{file}: policy_node.ros__parameters lacks {e}") from e


@dataclass(frozen=True, eq=False)
class _Rows:
    """One episode resampled: what the dataset writer takes."""

    state: np.ndarray
    action: np.ndarray
    tasks: list[str]
    frames: Callable[[], Iterator[np.ndarray]]  # RGB frames of the rows, decoded lazily
    camera: str
    extra: dict[str, Any]  # for the episode's episodes.jsonl row


@dataclass
class ConversionReport:
    target: Path
    source_format: str
    episodes: list[str] = field(default_factory=list)  # source episode names, in dataset order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source episode, why)
    frames: int = 0


def detect_source(source: Path) -> str:
    """rosbag2 when the episode folders are bags (metadata.yaml), xr when they hold data.json."""
    if not source.is_dir():
        raise ConversionError(f"{source}: not a folder")
    kinds = set()
    for folder in source.glob("episode_*"):
        if (folder / "metadata.yaml").is_file():
            kinds.add("rosbag2")
        elif (folder / "data.json").is_file():
            kinds.add("xr")
    if len(kinds) != 1:
        found = "both recorder bags and XR episodes" if kinds else "no episode_* folder with a bag or data.json"
        raise ConversionError(f"{source}: {found}; expected one kind of recording")
    return kinds.pop()


def convert(
    source: str | Path,
    target: str | Path,
    spec: ConversionSpec,
    *,
    force: bool = False,
    include_failed: bool = False,
    xr_fps: float | None = None,
    on_episode: Callable[[int, int, str], None] | None = None,
) -> ConversionReport:
    """Convert every episode under `source` into a dataset at `target`.

    Recorder episodes not marked successful in episode.json (`success` false, or null as in an
    interrupted episode) are left out unless `include_failed`; unfinished ones (still recording, or
    awaiting the recorder's recovery) always are. Both are listed in the report and the dataset's
    meta/conversion.json.
    `xr_fps`: the recording rate of XR episodes whose data.json does not record it.
    `on_episode(done, total, name)` is called after each episode (progress display).
    """
    source, target = Path(source), Path(target)
    kind = detect_source(source)
    _check_target(source, target, force)
    report = ConversionReport(target=target, source_format=kind)
    if kind == "rosbag2":
        loaders = [(f.name, partial(_bag_rows, f, spec, include_failed)) for f in find_bag_episodes(source)]
    else:
        try:
            xr_episodes = read_xr_episodes(source, xr_fps)
        except XrFormatError as e:
            raise ConversionError(str(e)) from e
        loaders = [(e.folder.name, partial(_xr_rows, e, spec)) for e in xr_episodes]

    with staged_folder(target) as staging:
        writer: DatasetWriter | None = None
        camera = None
        for i, (name, load) in enumerate(loaders):
            rows = load()
            if isinstance(rows, str):
                report.skipped.append((name, rows))
            else:
                if writer is None:
                    camera = rows.camera
                    writer = DatasetWriter(
                        staging, spec.rate, spec.state_joints, spec.action_joints, video_key(camera), ROBOT_TYPE
                    )
                elif rows.camera != camera:
                    raise ConversionError(
                        f"{source / name}: camera {rows.camera!r} differs from the first's {camera!r}"
                    )
                try:
                    writer.add_episode(rows.state, rows.action, rows.tasks, rows.frames(), rows.extra)
                except (ValueError, OSError) as e:  # BagFormatError and VideoError are ValueErrors
                    raise ConversionError(f"{source / name}: episode {name}: {e}") from e
                report.episodes.append(name)
                report.frames += len(rows.state)
            if on_episode is not None:
                on_episode(i + 1, len(loaders), name)
        if writer is None:
            raise ConversionError(f"{source}: no episode to convert ({len(report.skipped)} skipped)")
        writer.finish(
            {
                "source": str(source.resolve()),
                "source_format": kind,
                "rate": spec.rate,
                "slop": spec.slop,
                "camera": camera,
                "state_joints": list(spec.state_joints),
                "action_joints": list(spec.action_joints),
                "action_time": "the commanded target at the row's time + 1 / rate, interpolated linearly",
                "skipped": [{"source": n, "reason": r} for n, r in report.skipped],
            }
        )
    return report


def _check_target(source: Path, target: Path, force: bool) -> None:
    src, dst = source.resolve(), target.resolve()
    if dst == src or dst in src.parents:
        raise ConversionError(f"{target}: would contain the recordings in {source}; choose another folder")
    if not target.exists():
        return
    if not force:
        raise FileExistsError(f"{target} already exists; pass --force to replace it")
    if not (target / "meta" / "info.json").is_file():
        raise FileExistsError(f"{target} exists and is not a dataset (no meta/info.json); not replacing it")


def _failure(what: Path, error: Exception) -> ConversionError:
    return ConversionError(f"{what}: episode {what.name}: {error}")


def _bag_rows(folder: Path, spec: ConversionSpec, include_failed: bool) -> _Rows | str:
    """The episode's rows, or why it is left out."""
    metadata = read_episode_metadata(folder)
    status = metadata.get("status")
    if status == "recording" or (metadata and not (folder / "metadata.yaml").is_file()):
        return f"unfinished (status {status!r}): still being recorded, or run the recorder's recovery on it"
    # The recorder writes the operator's verdict; null means none was given (e.g. interrupted).
    if "success" in metadata and metadata["success"] is not True and not include_failed:
        return f"not marked successful (success {metadata['success']!r}, status {status!r})"
    episode = read_bag_episode(folder)
    camera = spec.camera
    if camera is None:
        if len(episode.cameras) != 1:
            raise _failure(folder, ValueError(f"several cameras {sorted(episode.cameras)}; choose one"))
        camera = next(iter(episode.cameras))
    if camera not in episode.cameras:
        raise _failure(folder, ValueError(f"no camera topic {camera!r}; it has {sorted(episode.cameras)}"))
    stream = episode.cameras[camera]
    try:
        state_all = episode.joint_states.select(spec.state_joints)
        commands = episode.commands.select(spec.action_joints)
        aligned = align_recording(
            stream.stamps, episode.joint_states.stamps, episode.commands.stamps, spec.rate, spec.slop
        )
    except AlignmentGap as e:
        # The stream stalled (a loaded machine, a dropped link): the online node would have held
        # there, so the episode has no usable sample at that row; the others still convert.
        return f"timing gap: {e}"
    except (KeyError, ValueError) as e:
        raise _failure(folder, e) from e
    state = state_all[aligned.joints]
    _check_finite(
        folder, episode.joint_states.topic, spec.state_joints, state, episode.joint_states.stamps[aligned.joints]
    )
    action = interpolate(episode.commands.stamps, commands, aligned.action_times)
    if not np.isfinite(action).all():
        # Report the command message that made an action non-finite.
        _check_finite(folder, episode.commands.topic, spec.action_joints, commands, episode.commands.stamps)
    tasks = episode.tasks_at(stream.stamps[aligned.frames])

    def frames() -> Iterator[np.ndarray]:
        for image, encoding in episode.images(camera, aligned.frames.tolist()):
            yield images_to_rgb(image[None], encoding)[0]

    extra = {"source": episode.name, "start_stamp": float(aligned.times[0]), "recording": episode.metadata}
    return _Rows(state, action, tasks, frames, camera, extra)


def _check_finite(folder: Path, topic: str, names: Sequence[str], values: np.ndarray, stamps: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row, joint = (int(x) for x in np.argwhere(bad)[0])
        raise _failure(folder, ValueError(f"{topic} has NaN/inf for {names[joint]} at {stamps[row]:.3f} s"))


def xr_column_names(slices: dict[str, slice]) -> list[str]:
    """Names for the state/action columns of an XR episode: the joint table's arm joint names for
    the arm groups (the tool records arm joints in the robot's motor order), `<group>_<i>` for the
    hand values, which the joint table does not cover."""
    arms = {
        side: [j.name for j in load_joint_table().in_groups("arm") if j.name.startswith(f"{side}_")]
        for side in ("left", "right")
    }
    names: list[str] = []
    for group in GROUP_ORDER:
        width = slices[group].stop - slices[group].start
        side, part = group.split("_")
        names += arms[side] if part == "arm" else [f"{group}_{i}" for i in range(width)]
    return names


def _xr_rows(episode: XrEpisode, spec: ConversionSpec) -> _Rows:
    folder = episode.folder
    camera = spec.camera if spec.camera is not None else episode.cameras[0]
    if camera not in episode.cameras:
        raise _failure(folder, ValueError(f"no camera {camera!r}; it has {list(episode.cameras)}"))
    names = xr_column_names(episode.state_slices)
    action_names = xr_column_names(episode.action_slices)
    try:
        state_cols = [names.index(n) for n in spec.state_joints]
        action_cols = [action_names.index(n) for n in spec.action_joints]
    except ValueError as e:
        raise _failure(folder, ValueError(f"{e}; XR columns are {names}")) from e
    stamps = episode.timestamps
    try:
        # State and action are recorded together with each frame: the same stamps, paired exactly.
        aligned = align_recording(stamps, stamps, stamps, spec.rate, 0.0)
    except ValueError as e:
        raise _failure(folder, e) from e
    state = episode.state[aligned.joints][:, state_cols]
    action = interpolate(stamps, episode.action[:, action_cols], aligned.action_times)

    def frames() -> Iterator[np.ndarray]:
        for t in aligned.frames.tolist():
            yield episode.frame(t, camera)

    extra = {"source": folder.name, "start_stamp": float(aligned.times[0]), "recording": episode.text}
    return _Rows(state, action, [episode.task] * len(state), frames, camera, extra)
