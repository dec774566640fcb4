"""The LeRobot v2.1 dataset layout: writing ours, reading ours and the GR00T-flavoured v2.0/v2.1
datasets the public DiT4DiT release trains on.

```
meta/info.json             codebase_version, fps, totals, path templates, features
meta/episodes.jsonl        {episode_index, tasks, length, ...} per episode
meta/tasks.jsonl           {task_index, task}
meta/episodes_stats.jsonl  {episode_index, stats: {feature: {min, max, mean, std, count}}}  (v2.1)
meta/stats.json            the same over the whole dataset, plus q01/q99 of state and action
                           (v2.0; GR00T's loader requires all six)
meta/modality.json         GR00T: which slices of which columns are state/action groups, video
                           and annotation keys
data/chunk-000/episode_000000.parquet
videos/chunk-000/observation.images.<camera>/episode_000000.mp4
```

Reading checks every episode when a dataset is opened (parquet readable, lengths agree with
episodes.jsonl and the video, state and action finite) and names the file and episode of whatever
is wrong, so bad data stops training before it starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dit4dit_policy.data.video import VideoError, VideoInfo, encode_video, probe_video

CODEBASE_VERSION = "v2.1"
READABLE_VERSIONS = ("v2.0", "v2.1")
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
STATE = "observation.state"
ACTION = "action"
IMAGES_PREFIX = "observation.images."
TASK_INDEX = "task_index"
# GR00T annotation keys that hold the task text (as indices into tasks.jsonl), most specific first.
TASK_ANNOTATIONS = ("human.action.task_description", "human.task_description")


class DatasetError(ValueError):
    """A dataset is missing, malformed or inconsistent; the message names the file and episode."""


# ---------------------------------------------------------------- writing


def video_key(camera: str) -> str:
    """The feature key of a camera: a topic such as /camera/color/image_raw becomes
    observation.images.camera_color_image_raw."""
    name = camera.strip("/").replace("/", "_")
    if not name:
        raise ValueError(f"camera name {camera!r} is empty")
    return IMAGES_PREFIX + name


class DatasetWriter:
    """Writes one dataset into an (empty, staging) folder: `add_episode` per episode, then `finish`."""

    def __init__(
        self,
        root: Path,
        fps: float,
        state_names: Sequence[str],
        action_names: Sequence[str],
        camera_key: str,
        robot_type: str,
    ):
        self.root = root
        self.fps = int(fps) if float(fps).is_integer() else float(fps)
        self.state_names = list(state_names)
        self.action_names = list(action_names)
        self.camera_key = camera_key
        self.robot_type = robot_type
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict[str, Any]] = []
        self.episode_stats: list[dict[str, Any]] = []
        self.rows: dict[str, list[np.ndarray]] = {STATE: [], ACTION: []}  # for the quantiles in stats.json
        self.video: VideoInfo | None = None
        self.frames = 0

    def add_episode(
        self,
        state: np.ndarray,
        action: np.ndarray,
        tasks: Sequence[str],
        frames: Iterable[np.ndarray],
        extra: dict[str, Any],
    ) -> int:
        """One episode: state [N, J], action [N, A], the task of each row and N RGB frames (uint8
        HxWx3); `extra` goes into its episodes.jsonl row. Returns its episode index."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = len(state)
        if state.shape != (n, len(self.state_names)) or action.shape != (n, len(self.action_names)):
            raise ValueError(f"state {state.shape} / action {action.shape} do not match the dataset's features")
        if len(tasks) != n or n == 0:
            raise ValueError(f"need one task per row for {n} rows, got {len(tasks)}")
        index = len(self.episodes)
        task_index = np.array([self.tasks.setdefault(t, len(self.tasks)) for t in tasks], dtype=np.int64)
        columns = {
            STATE: state.astype(np.float32),
            ACTION: action.astype(np.float32),
            "timestamp": (np.arange(n) / self.fps).astype(np.float32),
            "frame_index": np.arange(n, dtype=np.int64),
            "episode_index": np.full(n, index, dtype=np.int64),
            "index": self.frames + np.arange(n, dtype=np.int64),
            TASK_INDEX: task_index,
        }
        table = pa.table(
            {
                name: pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1]) if v.ndim == 2 else v
                for name, v in columns.items()
            }
        )
        path = self.root / episode_path(DATA_PATH, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)

        pixel_stats = _PixelStats()
        video = encode_video(
            self.root / episode_path(VIDEO_PATH, index, self.camera_key), pixel_stats.feed(frames), self.fps
        )
        if video.frames != n:
            raise ValueError(f"episode {index}: {video.frames} frames for {n} rows")
        if self.video is not None and (video.width, video.height) != (self.video.width, self.video.height):
            raise ValueError(
                f"episode {index}: frames are {video.width}x{video.height}, earlier episodes "
                f"{self.video.width}x{self.video.height}; one dataset holds one camera size"
            )
        self.video = video
        stats = {name: _stats(v.reshape(n, -1)) for name, v in columns.items()}
        for name, values in self.rows.items():
            values.append(columns[name])
        stats[self.camera_key] = pixel_stats.result()
        self.episode_stats.append({"episode_index": index, "stats": stats})
        unique_tasks = list(dict.fromkeys(tasks))
        self.episodes.append({"episode_index": index, "tasks": unique_tasks, "length": n, **extra})
        self.frames += n
        return index

    def finish(self, conversion: dict[str, Any]) -> None:
        """Write meta/: info, episodes, tasks, statistics, modality, and how the data was made."""
        if not self.episodes or self.video is None:
            raise ValueError("no episodes were written")
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        _write_json(meta / "info.json", self._info())
        _write_jsonl(meta / "episodes.jsonl", self.episodes)
        _write_jsonl(meta / "tasks.jsonl", [{"task_index": i, "task": t} for t, i in self.tasks.items()])
        _write_jsonl(meta / "episodes_stats.jsonl", self.episode_stats)
        stats = aggregate_stats([e["stats"] for e in self.episode_stats])
        for name, parts in self.rows.items():
            q01, q99 = np.quantile(np.concatenate(parts).astype(np.float64), [0.01, 0.99], axis=0)
            stats[name].update(q01=q01.tolist(), q99=q99.tolist())
        _write_json(meta / "stats.json", stats)
        camera = self.camera_key[len(IMAGES_PREFIX) :]
        modality = {
            "state": {"joints": {"start": 0, "end": len(self.state_names), "original_key": STATE}},
            "action": {"joints": {"start": 0, "end": len(self.action_names), "original_key": ACTION}},
            "video": {camera: {"original_key": self.camera_key}},
            "annotation": {TASK_ANNOTATIONS[0]: {"original_key": TASK_INDEX}},
        }
        _write_json(meta / "modality.json", modality)
        _write_json(meta / "conversion.json", conversion)

    def _info(self) -> dict[str, Any]:
        video = self.video
        scalar = {"shape": [1], "names": None}
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self.episodes),
            "total_frames": self.frames,
            "total_tasks": len(self.tasks),
            "total_videos": len(self.episodes),
            "total_chunks": (len(self.episodes) - 1) // CHUNKS_SIZE + 1,
            "chunks_size": CHUNKS_SIZE,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": {
                STATE: {"dtype": "float32", "shape": [len(self.state_names)], "names": self.state_names},
                ACTION: {"dtype": "float32", "shape": [len(self.action_names)], "names": self.action_names},
                self.camera_key: {
                    "dtype": "video",
                    "shape": [video.height, video.width, 3],
                    "names": ["height", "width", "channels"],
                    "info": {
                        "video.height": video.height,
                        "video.width": video.width,
                        "video.codec": video.codec,
                        "video.pix_fmt": "yuv420p",
                        "video.is_depth_map": False,
                        "video.fps": self.fps,
                        "video.channels": 3,
                        "has_audio": False,
                    },
                },
                "timestamp": {"dtype": "float32", **scalar},
                "frame_index": {"dtype": "int64", **scalar},
                "episode_index": {"dtype": "int64", **scalar},
                "index": {"dtype": "int64", **scalar},
                TASK_INDEX: {"dtype": "int64", **scalar},
            },
        }


def episode_path(template: str, episode: int, key: str | None = None) -> str:
    return template.format(episode_chunk=episode // CHUNKS_SIZE, episode_index=episode, video_key=key)


def _stats(values: np.ndarray) -> dict[str, list[float]]:
    v = values.astype(np.float64)
    return {
        "min": v.min(axis=0).tolist(),
        "max": v.max(axis=0).tolist(),
        "mean": v.mean(axis=0).tolist(),
        "std": v.std(axis=0).tolist(),
        "count": [len(v)],
    }


class _PixelStats:
    """Per-channel statistics of the frames passing through, in [0, 1] and shaped [3, 1, 1] as
    LeRobot stores image statistics. Taken on every 4th pixel row and column: LeRobot estimates them
    on downsampled frames too, and nothing here trains on them, while all pixels cost a fifth of a
    conversion's time."""

    def __init__(self) -> None:
        self.lo = np.full(3, np.inf)
        self.hi = np.full(3, -np.inf)
        self.total = np.zeros(3)
        self.squares = np.zeros(3)
        self.pixels = 0
        self.frames = 0

    def feed(self, frames: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
        for rgb in frames:
            flat = rgb[::4, ::4].reshape(-1, 3)
            self.lo = np.minimum(self.lo, flat.min(axis=0))
            self.hi = np.maximum(self.hi, flat.max(axis=0))
            channel_sums = flat.sum(axis=0, dtype=np.float64)
            self.total += channel_sums
            self.squares += np.einsum("ij,ij->j", flat, flat, dtype=np.float64)
            self.pixels += len(flat)
            self.frames += 1
            yield rgb

    def result(self) -> dict[str, Any]:
        mean = self.total / self.pixels
        std = np.sqrt(np.maximum(self.squares / self.pixels - mean**2, 0.0))

        def shaped(v: np.ndarray) -> list[Any]:
            return (v / 255.0).reshape(3, 1, 1).tolist()

        return {
            "min": shaped(self.lo),
            "max": shaped(self.hi),
            "mean": shaped(mean),
            "std": shaped(std),
            "count": [self.frames],
        }


def aggregate_stats(per_episode: Sequence[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Whole-dataset statistics from per-episode ones (min of mins, count-weighted mean, pooled std)."""
    out: dict[str, dict[str, Any]] = {}
    for key in per_episode[0]:
        parts = [e[key] for e in per_episode if key in e]
        counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
        shape = np.asarray(parts[0]["mean"]).shape
        weights = (counts / counts.sum()).reshape(-1, *([1] * len(shape)))
        means = np.stack([np.asarray(p["mean"], dtype=np.float64) for p in parts])
        stds = np.stack([np.asarray(p["std"], dtype=np.float64) for p in parts])
        mean = (weights * means).sum(axis=0)
        var = (weights * (stds**2 + (means - mean) ** 2)).sum(axis=0)
        out[key] = {
            "min": np.min([np.asarray(p["min"], dtype=np.float64) for p in parts], axis=0).tolist(),
            "max": np.max([np.asarray(p["max"], dtype=np.float64) for p in parts], axis=0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(var).tolist(),
            "count": [int(counts.sum())],
        }
    return out


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Slice:
    column: str
    start: int
    end: int


@dataclass(frozen=True, eq=False)
class DatasetMeta:
    root: Path
    info: dict[str, Any]
    episodes: dict[int, dict[str, Any]]  # episode_index -> its episodes.jsonl row
    tasks: dict[int, str]
    modality: dict[str, Any] | None  # GR00T's meta/modality.json
    stats: dict[str, dict[str, Any]] | None  # whole-dataset statistics per feature
    conversion: dict[str, Any] | None  # how we made it (absent in datasets from elsewhere)

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.info["features"].items() if isinstance(f, dict) and f.get("dtype") == "video"]

    def data_path(self, episode: int) -> Path:
        return self.root / episode_path(self.info["data_path"], episode)

    def video_path(self, episode: int, key: str) -> Path:
        return self.root / episode_path(self.info["video_path"], episode, key)


def read_meta(root: str | Path) -> DatasetMeta:
    root = Path(root)
    meta = root / "meta"
    info_path = meta / "info.json"
    if not info_path.is_file():
        raise DatasetError(f"{root}: not a LeRobot dataset (no meta/info.json)")
    info = _read_json(info_path)
    version = info.get("codebase_version")
    if version not in READABLE_VERSIONS:
        raise DatasetError(f"{info_path}: codebase_version {version!r} is not one of {list(READABLE_VERSIONS)}")
    for key in ("fps", "features", "data_path", "video_path"):
        if key not in info:
            raise DatasetError(f"{info_path}: missing {key!r}")
    episodes: dict[int, dict[str, Any]] = {}
    for row, where in _read_jsonl(meta / "episodes.jsonl"):
        index = row.get("episode_index")
        if not isinstance(index, int) or index in episodes:
            raise DatasetError(f"{where}: episode_index missing or repeated: {index!r}")
        episodes[index] = row
    if not episodes:
        raise DatasetError(f"{meta / 'episodes.jsonl'}: no episodes")
    tasks: dict[int, str] = {}
    for row, where in _read_jsonl(meta / "tasks.jsonl"):
        if not isinstance(row.get("task_index"), int) or not isinstance(row.get("task"), str):
            raise DatasetError(f"{where}: a task needs an int task_index and a str task, got {row}")
        tasks[row["task_index"]] = row["task"]
    modality = _read_json(meta / "modality.json") if (meta / "modality.json").is_file() else None
    conversion = _read_json(meta / "conversion.json") if (meta / "conversion.json").is_file() else None
    return DatasetMeta(
        root=root,
        info=info,
        episodes=episodes,
        tasks=tasks,
        modality=modality,
        stats=_read_stats(meta),
        conversion=conversion,
    )


def _read_stats(meta: Path) -> dict[str, dict[str, Any]] | None:
    """meta/stats.json, or (v2.1 datasets without it) the aggregate of episodes_stats.jsonl."""
    if (meta / "stats.json").is_file():
        return _read_json(meta / "stats.json")
    if (meta / "episodes_stats.jsonl").is_file():
        rows = [row.get("stats") for row, _ in _read_jsonl(meta / "episodes_stats.jsonl")]
        if rows and all(isinstance(r, dict) for r in rows):
            return aggregate_stats(rows)
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: unreadable JSON: {e}") from e


def _read_jsonl(path: Path) -> Iterable[tuple[dict[str, Any], str]]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{number}: invalid JSON: {e}") from e
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object")
        yield row, f"{path}:{number}"


@dataclass(frozen=True)
class Layout:
    """Where a dataset keeps what training needs: state and action as slices of columns (GR00T
    modality groups, in modality.json order), the task-index column and the camera's video key."""

    state: tuple[Slice, ...]
    action: tuple[Slice, ...]
    task_column: str
    video_key: str

    @property
    def state_dim(self) -> int:
        return sum(s.end - s.start for s in self.state)

    @property
    def action_dim(self) -> int:
        return sum(s.end - s.start for s in self.action)


def dataset_layout(meta: DatasetMeta, camera: str | None = None) -> Layout:
    """The layout from meta/modality.json, or plain LeRobot's (whole observation.state and action
    columns, task_index). `camera`: a video key, with or without the observation.images. prefix;
    default the first video."""
    features = meta.info["features"]
    where = meta.root / "meta" / ("modality.json" if meta.modality else "info.json")
    if meta.modality:
        state = _slices(meta.modality, "state", STATE, where)
        action = _slices(meta.modality, "action", ACTION, where)
        annotations = meta.modality.get("annotation") or {}
        task_column = next(
            (annotations[k].get("original_key", f"annotation.{k}") for k in TASK_ANNOTATIONS if k in annotations),
            TASK_INDEX,
        )
        videos = [v.get("original_key", IMAGES_PREFIX + k) for k, v in (meta.modality.get("video") or {}).items()]
    else:
        state, action, task_column = (), (), TASK_INDEX
        for name in (STATE, ACTION):
            if name not in features:
                raise DatasetError(f"{where}: no {name!r} feature")
        state = (Slice(STATE, 0, _width(features[STATE], STATE, where)),)
        action = (Slice(ACTION, 0, _width(features[ACTION], ACTION, where)),)
        videos = meta.video_keys
    if not videos:
        raise DatasetError(f"{where}: the dataset has no video")
    if camera is None:
        key = videos[0]
    else:
        key = camera if camera.startswith(IMAGES_PREFIX) else IMAGES_PREFIX + camera
        if key not in videos:
            raise DatasetError(f"{where}: no camera {camera!r}; videos are {videos}")
    return Layout(state=state, action=action, task_column=task_column, video_key=key)


def _width(feature: Any, name: str, where: Path) -> int:
    shape = feature.get("shape") if isinstance(feature, dict) else None
    if not isinstance(shape, list) or len(shape) != 1 or not isinstance(shape[0], int):
        raise DatasetError(f"{where}: feature {name!r} needs a 1-D shape, got {shape!r}")
    return shape[0]


def _slices(modality: dict[str, Any], group: str, default_column: str, where: Path) -> tuple[Slice, ...]:
    entries = modality.get(group)
    if not isinstance(entries, dict) or not entries:
        raise DatasetError(f"{where}: no {group!r} entries")
    slices = []
    for key, entry in entries.items():
        start, end = entry.get("start"), entry.get("end")
        if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end:
            raise DatasetError(f"{where}: {group}.{key} needs 0 <= start < end, got {start!r}, {end!r}")
        slices.append(Slice(entry.get("original_key", default_column), start, end))
    return tuple(slices)


@dataclass(frozen=True, eq=False)
class EpisodeData:
    index: int
    state: np.ndarray  # [N, state_dim] float64
    action: np.ndarray  # [N, action_dim] float64
    task_index: np.ndarray  # [N] int64
    video: Path

    def __len__(self) -> int:
        return len(self.state)


def read_episode(meta: DatasetMeta, layout: Layout, episode: int) -> EpisodeData:
    """One episode's table and video header, checked; DatasetError naming the file and episode."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if episode not in meta.episodes:
        raise DatasetError(f"{meta.root}: no episode {episode}; episodes.jsonl lists {len(meta.episodes)}")
    path = meta.data_path(episode)
    where = f"{path} (episode {episode})"
    if not path.is_file():
        raise DatasetError(f"{where}: missing parquet file")
    columns = sorted({s.column for s in (*layout.state, *layout.action)} | {layout.task_column})
    try:
        missing = sorted(set(columns) - set(pq.read_schema(path).names))
        if missing:
            raise DatasetError(f"{where}: no column(s) {missing}")
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{where}: unreadable parquet: {e}") from e
    n = table.num_rows
    expected = meta.episodes[episode].get("length")
    if expected is not None and expected != n:
        raise DatasetError(f"{where}: {n} rows but episodes.jsonl says length {expected}")
    if n == 0:
        raise DatasetError(f"{where}: no rows")
    state = _gather(table, layout.state, where)
    action = _gather(table, layout.action, where)
    for name, values in (("state", state), ("action", action)):
        bad = ~np.isfinite(values)
        if bad.any():
            row, col = (int(x) for x in np.argwhere(bad)[0])
            raise DatasetError(
                f"{where}: {name} has NaN or inf at row {row}, dim {col} ({int(bad.any(axis=1).sum())} row(s))"
            )
    task_index = _matrix(table.column(layout.task_column), layout.task_column, where)[:, 0].astype(np.int64)
    unknown = sorted(set(task_index.tolist()) - set(meta.tasks))
    if unknown:
        raise DatasetError(f"{where}: task index(es) {unknown[:5]} are not in tasks.jsonl")
    video = meta.video_path(episode, layout.video_key)
    if not video.is_file():
        raise DatasetError(f"{video} (episode {episode}): missing video")
    try:
        info = probe_video(video)
    except VideoError as e:
        raise DatasetError(f"{e} (episode {episode})") from e
    if info.frames and info.frames != n:
        raise DatasetError(f"{video} (episode {episode}): {info.frames} video frames but {n} rows in {path.name}")
    return EpisodeData(index=episode, state=state, action=action, task_index=task_index, video=video)


def _gather(table: Any, slices: Sequence[Slice], where: str) -> np.ndarray:
    parts = []
    for s in slices:
        matrix = _matrix(table.column(s.column), s.column, where)
        if matrix.shape[1] < s.end:
            raise DatasetError(f"{where}: column {s.column!r} has {matrix.shape[1]} values per row, needs {s.end}")
        parts.append(matrix[:, s.start : s.end])
    return np.concatenate(parts, axis=1)


def _matrix(column: Any, name: str, where: str) -> np.ndarray:
    """A parquet column of numbers or of equal-length number lists as float64 [N, width]."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = column.combine_chunks()
    if array.null_count:
        raise DatasetError(f"{where}: column {name!r} has {array.null_count} null value(s)")
    kind = array.type
    if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = np.asarray(pc.list_value_length(array).to_numpy(zero_copy_only=False))
        if len(lengths) and (lengths != lengths[0]).any():
            row = int(np.flatnonzero(lengths != lengths[0])[0])
            raise DatasetError(f"{where}: column {name!r} row {row} has {lengths[row]} values, row 0 has {lengths[0]}")
        width = int(lengths[0]) if len(lengths) else 0
        values = array.flatten()
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        width, values = 1, array
    else:
        raise DatasetError(f"{where}: column {name!r} has type {kind}, not numbers")
    try:
        flat = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    except (TypeError, ValueError, pa.ArrowException) as e:
        raise DatasetError(f"{where}: column {name!r} is not numeric: {e}") from e
    return flat.reshape(len(array), width)


def action_range(meta: DatasetMeta, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's stored per-dim action min and max, for the layout's action slices."""
    where = meta.root / "meta" / "stats.json"
    if meta.stats is None:
        raise DatasetError(f"{where}: no statistics (neither stats.json nor episodes_stats.jsonl)")
    lo, hi = [], []
    for s in layout.action:
        entry = meta.stats.get(s.column)
        if not isinstance(entry, dict) or "min" not in entry or "max" not in entry:
            raise DatasetError(f"{where}: no min/max statistics for {s.column!r}")
        lo_all = np.asarray(entry["min"], dtype=np.float64).reshape(-1)
        hi_all = np.asarray(entry["max"], dtype=np.float64).reshape(-1)
        if min(lo_all.size, hi_all.size) < s.end:
            raise DatasetError(f"{where}: {s.column!r} statistics have {lo_all.size} dims, the layout needs {s.end}")
        lo.append(lo_all[s.start : s.end])
        hi.append(hi_all[s.start : s.end])
    return np.concatenate(lo), np.concatenate(hi)
