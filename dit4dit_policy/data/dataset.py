"""The training view of a LeRobot dataset: samples of frames, state and action chunks for DiT4DiT.

Sample at row r of an episode of N rows (cfg = the model's config):
- `frames` float32 [T, 3, S, S] in [-1, 1]: rows r, r + stride, ..., r + (T-1) stride, each
  clamped to N - 1 (T = observation.num_frames, stride = observation.frame_stride, S = image_size)
- `state` float32 [state.dim]: `state_features` of the raw joint angles `state_raw` float32 [J]
- `actions` float32 [H, action.dim]: rows r..r+H-1 (clamped) normalised with `ActionNormalizer`
- `action_mask` float32 [H, action.dim]: 1 for real dims of rows inside the episode, else 0
- `actions_raw` float32 [H, action.real_dim] (padding repeats the episode's last action)
- `text` str: the row's task

Frames go through `images_to_model`, the policy node's own preprocessing, once per episode when
the dataset is opened: every episode's video is decoded and kept at the model's size as uint8
([N, 3, S, S], 3 S^2 bytes per row), so a sample costs indexing, not decoding. Decoding at open
also means a damaged video stops the run before training starts. Datasets opened in one process
share decoded episodes, and a DataLoader's forked workers share them with the parent (read-only
arrays: copy-on-write never copies them).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dit4dit_policy.data.lerobot import (
    DatasetError,
    DatasetMeta,
    EpisodeData,
    Layout,
    action_range,
    dataset_layout,
    read_episode,
    read_meta,
)
from dit4dit_policy.data.video import VideoError, decode_video
from dit4dit_policy.model.config import ModelConfig
from dit4dit_policy.preprocessing import ActionNormalizer, NormStats, images_to_model, state_features


class TrainingDataset(torch.utils.data.Dataset):
    """Map-style dataset over every row of the chosen episodes; see the module docstring for items."""

    def __init__(self, meta: DatasetMeta, layout: Layout, cfg: ModelConfig, episodes: Sequence[int]):
        self.meta = meta
        self.layout = layout
        self.cfg = cfg
        self.episodes = tuple(episodes)
        lo, hi = action_range(meta, layout)
        try:
            self.norm_stats = NormStats.from_range(lo, hi)
        except ValueError as e:
            raise DatasetError(f"{meta.root / 'meta'}: action statistics: {e}") from e
        self.normalizer = ActionNormalizer(self.norm_stats, cfg.action.dim)
        self._data: list[EpisodeData] = []
        self._frames: list[np.ndarray] = []  # per episode: uint8 [N, 3, S, S]
        self._features: list[np.ndarray] = []  # per episode: float32 [N, state.dim]
        self._actions: list[np.ndarray] = []  # per episode: normalised float32 [N, action.dim]
        for index in self.episodes:
            data = read_episode(meta, layout, index)
            self._data.append(data)
            self._features.append(state_features(data.state.astype(np.float32), cfg.state.dim))
            self._actions.append(self.normalizer.normalize(data.action.astype(np.float32)))
            self._frames.append(_model_frames(data, cfg.observation.image_size))
        lengths = np.array([len(d) for d in self._data], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(lengths)])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range 0..{len(self) - 1}")
        position = int(np.searchsorted(self._starts, index, side="right")) - 1
        row = index - int(self._starts[position])
        data = self._data[position]
        last = len(data) - 1
        obs, act = self.cfg.observation, self.cfg.action
        frame_rows = np.minimum(row + obs.frame_stride * np.arange(obs.num_frames), last)
        action_rows = np.minimum(row + np.arange(act.horizon), last)
        frames = torch.from_numpy(self._frames[position][frame_rows]).to(torch.float32).div_(127.5).sub_(1.0)
        mask = np.zeros((act.horizon, act.dim), dtype=np.float32)
        mask[: last - row + 1, : act.real_dim] = 1.0
        return {
            "frames": frames,
            "state": torch.from_numpy(self._features[position][row].copy()),
            "actions": torch.from_numpy(self._actions[position][action_rows]),
            "action_mask": torch.from_numpy(mask),
            "text": self.meta.tasks[int(data.task_index[row])],
            "state_raw": torch.from_numpy(data.state[row].astype(np.float32)),
            "actions_raw": torch.from_numpy(data.action[action_rows].astype(np.float32)),
        }


def open_training_dataset(
    root: str | Path,
    cfg: ModelConfig,
    *,
    episodes: Sequence[int] | None = None,
    camera: str | None = None,
) -> TrainingDataset:
    """Open a dataset (ours, or a GR00T-flavoured LeRobot v2 one with meta/modality.json) for
    training the model `cfg` on `episodes` (default all). `camera`: a video key where the dataset
    has several (default its first). State and action widths must match cfg.state.joints and
    cfg.action.real_dim. Decodes every episode's video (see the module docstring)."""
    meta = read_meta(root)
    layout = dataset_layout(meta, camera)
    where = meta.root / "meta"
    if layout.state_dim != cfg.state.joints:
        raise DatasetError(
            f"{where}: state has {layout.state_dim} dims; model {cfg.name} takes {cfg.state.joints} joints"
        )
    if layout.action_dim != cfg.action.real_dim:
        raise DatasetError(
            f"{where}: action has {layout.action_dim} dims; model {cfg.name} commands {cfg.action.real_dim}"
        )
    chosen = sorted(meta.episodes) if episodes is None else list(episodes)
    unknown = sorted(set(chosen) - set(meta.episodes))
    if unknown:
        raise DatasetError(f"{where}: episode(s) {unknown[:5]} are not in episodes.jsonl")
    if not chosen:
        raise DatasetError(f"{where}: no episodes chosen")
    return TrainingDataset(meta, layout, cfg, chosen)


# Decoded episodes by (video file, its size and mtime, image size), held for as long as a dataset
# uses them: a training run opens the whole dataset, then its training and validation subsets, and
# decodes each video once.
_decoded: weakref.WeakValueDictionary[tuple[str, int, int, int], np.ndarray] = weakref.WeakValueDictionary()


def _model_frames(data: EpisodeData, size: int) -> np.ndarray:
    stat = data.video.stat()
    key = (str(data.video.resolve()), stat.st_size, stat.st_mtime_ns, size)
    frames = _decoded.get(key)
    if frames is None:
        frames = _decode_for_model(data, size)
        frames.flags.writeable = False  # shared between datasets
        _decoded[key] = frames
    return frames


def _decode_for_model(data: EpisodeData, size: int) -> np.ndarray:
    """Decode an episode's video and preprocess it for the model, kept as uint8 [N, 3, S, S]."""
    out = np.empty((len(data), 3, size, size), dtype=np.uint8)
    count = 0
    try:
        for batch in decode_video(data.video):
            if count + len(batch) > len(data):
                raise DatasetError(f"{data.video} (episode {data.index}): more video frames than its {len(data)} rows")
            model = images_to_model(batch, "rgb8", size)
            out[count : count + len(batch)] = model.add_(1.0).mul_(127.5).round_().to(torch.uint8).numpy()
            count += len(batch)
    except VideoError as e:
        raise DatasetError(f"{e} (episode {data.index})") from e
    if count != len(data):
        raise DatasetError(f"{data.video} (episode {data.index}): {count} video frames but {len(data)} rows")
    return out
