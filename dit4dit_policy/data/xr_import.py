"""Reading episodes recorded by Unitree's XR teleoperation tool.

An episode is a folder `episode_NNNN/` holding `data.json` and `colors/{idx:06d}_{cam}.jpg`.
`data.json` has `info` (image size, fps, joint names), `text` (goal, desc, steps) and `data`,
a list of frames {idx, colors {cam: path}, states {group: {qpos: [...]}}, actions {same}}.
Everything except pixels is read and checked when the episode is opened, so a bad episode fails
before training starts rather than hours into it; pixels are decoded on demand.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Order of the groups in `state` and `action`, with the lengths each may have. Arms are 7 joints;
# hands are Dex3 (7 joints) or Inspire (6 values, 0..1). The `body` group is not arm or hand
# data, so it is left out.
GROUP_ORDER = ("left_arm", "right_arm", "left_ee", "right_ee")
GROUP_SIZES: dict[str, tuple[int, ...]] = {
    "left_arm": (7,),
    "right_arm": (7,),
    "left_ee": (7, 6),
    "right_ee": (7, 6),
}

_EPISODE_NAME = re.compile(r"episode_(\d+)")


class XrFormatError(ValueError):
    """A recorded episode does not match the format this reader expects."""


@dataclass(frozen=True, eq=False)
class XrEpisode:
    """One recorded episode; `state` and `action` columns follow GROUP_ORDER (see the `*_slices`)."""

    folder: Path
    task: str
    text: dict[str, Any]
    fps: float
    cameras: tuple[str, ...]
    image_size: tuple[int, int]  # (width, height)
    idx: np.ndarray  # [T] recorded frame numbers; gaps mean dropped frames
    timestamps: np.ndarray  # [T] seconds, idx / fps
    state: np.ndarray  # [T, S]
    action: np.ndarray  # [T, A]
    state_slices: dict[str, slice]  # group -> columns of `state`
    action_slices: dict[str, slice]  # group -> columns of `action`
    image_paths: tuple[tuple[Path, ...], ...]  # [T][camera]

    def __len__(self) -> int:
        return len(self.idx)

    def frame(self, t: int, cam: str) -> np.ndarray:
        """Decode the image of camera `cam` at frame position `t` as uint8 HxWx3 RGB."""
        if cam not in self.cameras:
            raise KeyError(f"{self.folder}: no camera {cam!r}; cameras are {list(self.cameras)}")
        if not 0 <= t < len(self.idx):
            raise IndexError(f"{self.folder}: frame {t} out of range 0..{len(self.idx) - 1}")
        with Image.open(self.image_paths[t][self.cameras.index(cam)]) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_xr_episodes(root: str | Path, fps: float | None = None) -> list[XrEpisode]:
    """Read every `episode_NNNN` folder under `root`, in episode-number order."""
    root = Path(root)
    if not root.is_dir():
        raise XrFormatError(f"{root}: not a folder")
    folders = [p for p in root.iterdir() if p.is_dir() and _EPISODE_NAME.fullmatch(p.name)]
    if not folders:
        raise XrFormatError(f"{root}: no episode_NNNN folders")
    folders.sort(key=lambda p: int(_EPISODE_NAME.fullmatch(p.name).group(1)))
    return [read_xr_episode(folder, fps) for folder in folders]


def read_xr_episode(folder: str | Path, fps: float | None = None) -> XrEpisode:
    """Read and check one episode; `fps` is needed only when `info` does not record it."""
    folder = Path(folder)
    path = folder / "data.json"
    if not path.is_file():
        raise XrFormatError(f"{path}: missing data.json in episode {folder.name}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise XrFormatError(f"{path}: invalid JSON: {error}") from error
    where = str(path)
    info = _get(doc, "info", dict, where)
    text = _get(doc, "text", dict, where)
    frames = _get(doc, "data", list, where)
    if not frames:
        raise XrFormatError(f"{where}: 'data' has no frames")

    image = _get(info, "image", dict, f"{where}: info")
    size = (_get(image, "width", int, f"{where}: info.image"), _get(image, "height", int, f"{where}: info.image"))
    rate = _episode_fps(image.get("fps"), fps, where)

    first_colors = _get(frames[0], "colors", dict, f"{where}: frame 0")
    cameras = tuple(first_colors)
    if not cameras:
        raise XrFormatError(f"{where}: frame 0: 'colors' names no camera")

    idx: list[int] = []
    state_rows: list[np.ndarray] = []
    action_rows: list[np.ndarray] = []
    state_sizes: dict[str, int] = {}
    action_sizes: dict[str, int] = {}
    image_paths: list[tuple[Path, ...]] = []
    for position, frame in enumerate(frames):
        at = f"{where}: frame {position}"
        if not isinstance(frame, dict):
            raise XrFormatError(f"{at}: expected an object, got {type(frame).__name__}")
        number = _get(frame, "idx", int, at)
        at = f"{at} (idx {number})"
        if idx and number <= idx[-1]:
            kind = "duplicated" if number == idx[-1] else "out of order"
            raise XrFormatError(f"{at}: idx {kind} after idx {idx[-1]}")
        idx.append(number)
        state_rows.append(_vector(_get(frame, "states", dict, at), state_sizes, f"{at}: states"))
        action_rows.append(_vector(_get(frame, "actions", dict, at), action_sizes, f"{at}: actions"))
        image_paths.append(_images(_get(frame, "colors", dict, at), cameras, folder, size, at))

    idx_array = np.asarray(idx, dtype=np.int64)
    return XrEpisode(
        folder=folder,
        task=_get(text, "goal", str, f"{where}: text"),
        text=dict(text),
        fps=rate,
        cameras=cameras,
        image_size=size,
        idx=idx_array,
        timestamps=idx_array / rate,
        state=np.stack(state_rows),
        action=np.stack(action_rows),
        state_slices=_slices(state_sizes),
        action_slices=_slices(action_sizes),
        image_paths=tuple(image_paths),
    )


def _get(mapping: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in mapping:
        raise XrFormatError(f"{where}: missing key {key!r}")
    value = mapping[key]
    # bool is an int subclass, but true/false is never a valid count or index here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise XrFormatError(f"{where}: {key!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def _episode_fps(recorded: Any, given: float | None, where: str) -> float:
    if recorded is None and given is None:
        raise XrFormatError(f"{where}: info.image has no 'fps' and none was given for this episode")
    if recorded is not None and given is not None and recorded != given:
        raise XrFormatError(f"{where}: info.image.fps is {recorded} but {given} was given")
    rate = recorded if recorded is not None else given
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
        raise XrFormatError(f"{where}: fps must be a positive number, got {rate!r}")
    return float(rate)


def _slices(sizes: dict[str, int]) -> dict[str, slice]:
    slices, start = {}, 0
    for group in GROUP_ORDER:
        slices[group] = slice(start, start + sizes[group])
        start += sizes[group]
    return slices


def _vector(groups: dict[str, Any], sizes: dict[str, int], where: str) -> np.ndarray:
    """Concatenate the groups' qpos in GROUP_ORDER; `sizes` pins each group's length to its first frame's."""
    parts = []
    for group in GROUP_ORDER:
        entry = _get(groups, group, dict, where)
        try:
            values = np.asarray(_get(entry, "qpos", list, f"{where}.{group}"), dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise XrFormatError(f"{where}.{group}.qpos: not a list of numbers: {error}") from error
        if values.ndim != 1:
            raise XrFormatError(f"{where}.{group}.qpos: expected a flat list, got shape {values.shape}")
        if values.size not in GROUP_SIZES[group]:
            raise XrFormatError(f"{where}.{group}.qpos: {values.size} values, expected one of {GROUP_SIZES[group]}")
        expected = sizes.setdefault(group, values.size)
        if values.size != expected:
            raise XrFormatError(f"{where}.{group}.qpos: {values.size} values, earlier frames had {expected}")
        if not np.all(np.isfinite(values)):
            raise XrFormatError(f"{where}.{group}.qpos: non-finite value in {values.tolist()}")
        parts.append(values)
    return np.concatenate(parts)


def _images(
    colors: dict[str, Any], cameras: tuple[str, ...], folder: Path, size: tuple[int, int], where: str
) -> tuple[Path, ...]:
    """Check that each camera's image exists and has the recorded size, reading only its header."""
    if set(colors) != set(cameras):
        raise XrFormatError(f"{where}: cameras {list(colors)} differ from frame 0's {list(cameras)}")
    paths = []
    for cam in cameras:
        path = folder / _get(colors, cam, str, f"{where}: colors")
        if not path.is_file():
            raise XrFormatError(f"{where}: missing image {path}")
        try:
            with Image.open(path) as image:
                found = image.size
        except OSError as error:
            raise XrFormatError(f"{where}: unreadable image {path}: {error}") from error
        if found != size:
            raise XrFormatError(f"{where}: image {path} is {found[0]}x{found[1]}, info says {size[0]}x{size[1]}")
        paths.append(path)
    return tuple(paths)
