"""The training dataset: samples per the reader contract, no train/serve skew, bad data refused by
file and episode, and GR00T-flavoured datasets."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dit4dit_policy.data import synthetic
from dit4dit_policy.data.bag_episode import read_bag_episode
from dit4dit_policy.data.convert import ConversionSpec, convert
from dit4dit_policy.data.dataset import open_training_dataset
from dit4dit_policy.data.lerobot import DatasetError, read_meta
from dit4dit_policy.data.synthetic import SyntheticEpisode, write_bag_episode
from dit4dit_policy.data.video import encode_video
from dit4dit_policy.model.config import ActionConfig, StateConfig, load_preset
from dit4dit_policy.preprocessing import ActionNormalizer, NormStats, image_to_model, state_features

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CAMERA = "/camera/color/image_raw"
KEY = "observation.images.camera_color_image_raw"
RIGHT_ARM = tuple(n for n in synthetic.ARM_JOINTS if n.startswith("right_"))
SPEC = ConversionSpec(state_joints=RIGHT_ARM, action_joints=RIGHT_ARM, rate=10.0, slop=0.02, camera=CAMERA)
CFG = load_preset("tiny")  # 5 frames at stride 2, 64x64, 7 joints -> 16 features, horizon 8, action dim 8
RECORDINGS = (
    SyntheticEpisode(duration=2.0, width=128, height=96),
    SyntheticEpisode(duration=1.2, width=128, height=96, instructions=((0.0, "stack the cups"),)),
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for i, spec in enumerate(RECORDINGS):
        write_bag_episode(root / "rec" / f"episode_{i:06d}", spec)
    convert(root / "rec", root / "ds", SPEC)
    return root


@pytest.fixture
def dataset_copy(converted, tmp_path):
    return shutil.copytree(converted / "ds", tmp_path / "ds")


def _table(meta, episode):
    return pq.read_table(meta.data_path(episode)).to_pydict()


def test_when_sampling_expect_the_contracts_keys_shapes_and_dtypes(converted):
    ds = open_training_dataset(converted / "ds", CFG)
    lengths = [read_meta(converted / "ds").episodes[i]["length"] for i in (0, 1)]
    assert ds.episodes == (0, 1) and len(ds) == sum(lengths)
    item = ds[3]
    shapes = {k: tuple(v.shape) for k, v in item.items() if isinstance(v, torch.Tensor)}
    assert shapes == {
        "frames": (5, 3, 64, 64),
        "state": (16,),
        "actions": (8, 8),
        "action_mask": (8, 8),
        "state_raw": (7,),
        "actions_raw": (8, 7),
    }
    assert all(item[k].dtype == torch.float32 for k in shapes)
    assert item["text"] == "put the cup on the plate" and ds[lengths[0]]["text"] == "stack the cups"
    assert item["frames"].min() >= -1 and item["frames"].max() <= 1
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["frames"].shape == (4, 5, 3, 64, 64) and len(batch["text"]) == 4


def test_when_sampling_near_the_end_expect_clamped_frames_padded_chunk_and_mask(converted):
    ds = open_training_dataset(converted / "ds", CFG)
    meta = read_meta(converted / "ds")
    table = _table(meta, 1)
    n = len(table["index"])
    offset = meta.episodes[0]["length"]
    states, actions = np.array(table["observation.state"]), np.array(table["action"])
    normalizer = ActionNormalizer(ds.norm_stats, CFG.action.dim)
    for row in (0, n - 6, n - 1):
        item = ds[offset + row]
        rows = np.minimum(row + np.arange(8), n - 1)
        np.testing.assert_array_equal(item["state_raw"].numpy(), states[row].astype(np.float32))
        np.testing.assert_allclose(item["state"].numpy(), state_features(states[row], 16), atol=1e-6)
        np.testing.assert_array_equal(item["actions_raw"].numpy(), actions[rows].astype(np.float32))
        np.testing.assert_allclose(item["actions"].numpy(), normalizer.normalize(actions[rows]), atol=1e-5)
        valid = min(8, n - row)
        expected_mask = np.zeros((8, 8), np.float32)
        expected_mask[:valid, :7] = 1
        np.testing.assert_array_equal(item["action_mask"].numpy(), expected_mask)
        # Frame j shows row min(row + 2 j, n - 1): its blue level names the recorded frame.
        blue = (item["frames"][:, 2].mean(dim=(1, 2)).numpy() + 1) * 127.5
        frame_rows = np.minimum(row + 2 * np.arange(5), n - 1)
        levels = [synthetic.frame_level(3 * r) for r in frame_rows]  # 30 Hz camera, 10 Hz rows from frame 0
        np.testing.assert_allclose(blue, levels, atol=2.5)


def test_when_comparing_with_the_policy_nodes_path_expect_only_the_codecs_loss(converted):
    ds = open_training_dataset(converted / "ds", CFG, episodes=[0])
    episode = read_bag_episode(converted / "rec" / "episode_000000")
    for row in (0, 7, 19):
        image, encoding = next(episode.images(CAMERA, [3 * row]))
        online = image_to_model(image, encoding, 64)  # what the node feeds the model
        offline = ds[row]["frames"][0]
        difference = (offline - online).abs()
        assert difference.mean() < 0.02 and difference.max() < 0.1, (row, float(difference.mean()))


def test_when_opening_some_episodes_expect_the_whole_datasets_stats(converted):
    meta = read_meta(converted / "ds")
    actions = np.concatenate([np.array(_table(meta, i)["action"]) for i in (0, 1)])
    ds = open_training_dataset(converted / "ds", CFG, episodes=[1])
    assert ds.episodes == (1,) and len(ds) == meta.episodes[1]["length"]
    assert ds.norm_stats == NormStats.compute(actions.astype(np.float32).astype(np.float64))
    with pytest.raises(DatasetError, match=r"episode\(s\) \[7\] are not in episodes.jsonl"):
        open_training_dataset(converted / "ds", CFG, episodes=[1, 7])


def test_when_opened_again_in_one_process_expect_each_video_decoded_once(converted, monkeypatch):
    from dit4dit_policy.data import dataset as module

    decoded = []
    original = module._decode_for_model
    monkeypatch.setattr(
        module, "_decode_for_model", lambda data, size: decoded.append(data.index) or original(data, size)
    )
    everything = open_training_dataset(converted / "ds", CFG)
    train, val = (
        open_training_dataset(converted / "ds", CFG, episodes=[0]),
        open_training_dataset(converted / "ds", CFG, episodes=[1]),
    )
    assert sorted(decoded) == [0, 1]
    torch.testing.assert_close(train[2]["frames"], everything[2]["frames"], atol=0, rtol=0)
    assert len(val) == len(everything) - len(train)
    train[2]["frames"].add_(1)  # a sample is the caller's to change
    torch.testing.assert_close(train[2]["frames"], everything[2]["frames"], atol=0, rtol=0)
    del everything, train, val
    open_training_dataset(converted / "ds", CFG, episodes=[0])
    assert sorted(decoded) == [0, 0, 1], "an episode no dataset holds any more is decoded afresh"


def test_when_dataset_is_plain_lerobot_expect_the_same_samples(converted, dataset_copy):
    (dataset_copy / "meta" / "modality.json").unlink()
    (dataset_copy / "meta" / "stats.json").unlink()  # v2.1: episodes_stats.jsonl suffices
    ours, plain = open_training_dataset(converted / "ds", CFG), open_training_dataset(dataset_copy, CFG)
    assert plain.norm_stats == ours.norm_stats
    for index in (0, 25):
        for key, value in ours[index].items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(plain[index][key], value, atol=1e-6, rtol=0)


def _rewrite(meta, episode, column, change):
    path = meta.data_path(episode)
    table = pq.read_table(path)
    values = np.array(table.column(column).to_pylist())
    change(values)
    array = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1).astype(np.float32)), values.shape[1])
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, array), path)


def _nan_action(meta):
    def change(values):
        values[4, 2] = np.nan

    _rewrite(meta, 1, "action", change)


def _truncate_parquet(meta):
    path = meta.data_path(1)
    path.write_bytes(path.read_bytes()[:-100])


def _drop_video(meta):
    meta.video_path(1, KEY).unlink()


def _drop_action_column(meta):
    path = meta.data_path(1)
    pq.write_table(pq.read_table(path).drop_columns(["action"]), path)


def _garble_video(meta):
    meta.video_path(1, KEY).write_bytes(b"\0" * 1000)


@pytest.mark.parametrize(
    "damage,match",
    [
        (_nan_action, r"episode_000001.parquet \(episode 1\): action has NaN or inf at row 4, dim 2"),
        (_truncate_parquet, r"episode_000001.parquet \(episode 1\): unreadable parquet"),
        (_drop_video, r"episode_000001.mp4 \(episode 1\): missing video"),
        (_drop_action_column, r"episode_000001.parquet \(episode 1\): no column\(s\) \['action'\]"),
        (_garble_video, r"episode_000001.mp4: unreadable video.*\(episode 1\)"),
    ],
)
def test_when_data_is_bad_expect_errors_naming_file_and_episode(dataset_copy, damage, match):
    meta = read_meta(dataset_copy)
    damage(meta)
    with pytest.raises(DatasetError, match=match):
        open_training_dataset(dataset_copy, CFG)
    assert len(open_training_dataset(dataset_copy, CFG, episodes=[0])) == meta.episodes[0]["length"]


def test_when_lengths_disagree_expect_errors_naming_both_counts(dataset_copy):
    meta = read_meta(dataset_copy)
    n = meta.episodes[0]["length"]
    lines = (dataset_copy / "meta" / "episodes.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["length"] = n + 1
    (dataset_copy / "meta" / "episodes.jsonl").write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    with pytest.raises(
        DatasetError, match=rf"episode_000000.parquet \(episode 0\): {n} rows but episodes.jsonl says length {n + 1}"
    ):
        open_training_dataset(dataset_copy, CFG)
    (dataset_copy / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")

    short = [synthetic.frame_rgb(i, 96, 128) for i in range(n - 2)]
    encode_video(meta.video_path(0, KEY), short, 10)
    with pytest.raises(DatasetError, match=rf"episode_000000.mp4 \(episode 0\): {n - 2} video frames but {n} rows"):
        open_training_dataset(dataset_copy, CFG)


def test_when_model_does_not_fit_the_data_expect_error_naming_the_dims(converted):
    wide = dataclasses.replace(CFG, state=StateConfig(joints=8, dim=16))
    with pytest.raises(DatasetError, match="state has 7 dims; model tiny takes 8 joints"):
        open_training_dataset(converted / "ds", wide)
    with pytest.raises(DatasetError, match="not a LeRobot dataset"):
        open_training_dataset(converted / "rec", CFG)


# ---------------------------------------------------------------- GR00T-flavoured LeRobot v2.0


def _gr00t_dataset(root, lengths=(12, 9)):
    """A LIBERO-like dataset as the public DiT4DiT release trains on: state 8 (eef pose, pad,
    gripper), action 7, two cameras, the task in an annotation column, statistics in stats.json."""
    features = {
        "observation.state": {"dtype": "float64", "shape": [8], "names": None},
        "action": {"dtype": "float64", "shape": [7], "names": None},
        "observation.images.primary_image": {"dtype": "video", "shape": [32, 32, 3], "names": None},
        "observation.images.wrist_image": {"dtype": "video", "shape": [32, 32, 3], "names": None},
    }
    info = {
        "codebase_version": "v2.0",
        "fps": 10,
        "features": features,
        "chunks_size": 1000,
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
    }
    state_keys = {k: (i, i + 1) for i, k in enumerate(["x", "y", "z", "roll", "pitch", "yaw", "pad"])}
    modality = {
        "state": {"gripper": {"start": 7, "end": 8}, **{k: {"start": a, "end": b} for k, (a, b) in state_keys.items()}},
        "action": {
            k: {"start": i, "end": i + 1} for i, k in enumerate(["x", "y", "z", "roll", "pitch", "yaw", "grip"])
        },
        "video": {
            "primary_image": {"original_key": "observation.images.primary_image"},
            "wrist_image": {"original_key": "observation.images.wrist_image"},
        },
        "annotation": {
            "human.action.task_description": {"original_key": "annotation.human.action.task_description"},
            "human.validity": {"original_key": "annotation.human.validity"},
        },
    }
    (root / "meta").mkdir(parents=True)
    all_actions = []
    for episode, n in enumerate(lengths):
        t = np.arange(n, dtype=np.float64)
        state = np.stack([t * 0.1 + k for k in range(8)], axis=1)
        action = np.stack([np.sin(t + k) for k in range(7)], axis=1)
        all_actions.append(action)
        table = pa.table(
            {
                "observation.state": pa.array(state.tolist(), type=pa.list_(pa.float64())),
                "action": pa.array(action.tolist(), type=pa.list_(pa.float64())),
                "timestamp": pa.array(t / 10),
                "annotation.human.action.task_description": pa.array([2 + episode] * n),
                "annotation.human.validity": pa.array([1] * n),
                "task_index": pa.array([0] * n),
                "episode_index": pa.array([episode] * n),
            }
        )
        path = root / f"data/chunk-000/episode_{episode:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        for view, level in (("primary_image", 60), ("wrist_image", 200)):
            frames = [np.full((32, 32, 3), level, np.uint8) for _ in range(n)]
            encode_video(root / f"videos/chunk-000/observation.images.{view}/episode_{episode:06d}.mp4", frames, 10)
    actions = np.concatenate(all_actions)
    stats = {"action": {"min": actions.min(0).tolist(), "max": actions.max(0).tolist(), "q01": [0.0] * 7}}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "modality.json").write_text(json.dumps(modality))
    (root / "meta" / "stats.json").write_text(json.dumps(stats))
    tasks = ["valid", "invalid", "open the drawer", "close the drawer"]
    (root / "meta" / "tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(tasks))
    )
    (root / "meta" / "episodes.jsonl").write_text(
        "".join(
            json.dumps({"episode_index": i, "tasks": [tasks[2 + i]], "length": n}) + "\n" for i, n in enumerate(lengths)
        )
    )
    return root, actions


def test_when_reading_a_gr00t_dataset_expect_modality_slices_annotation_task_and_stats(tmp_path):
    root, actions = _gr00t_dataset(tmp_path / "libero")
    cfg = dataclasses.replace(
        CFG, state=StateConfig(joints=8, dim=16), action=ActionConfig(real_dim=7, dim=8, horizon=8)
    )
    ds = open_training_dataset(root, cfg)
    assert len(ds) == 21 and ds.norm_stats == NormStats.compute(actions)
    item = ds[13]  # episode 1, row 1
    # State in modality.json order: gripper (column 7) first, then x..pad (columns 0..6).
    np.testing.assert_allclose(item["state_raw"].numpy(), [7.1, 0.1, 1.1, 2.1, 3.1, 4.1, 5.1, 6.1], atol=1e-6)
    np.testing.assert_allclose(item["actions_raw"][0].numpy(), np.sin(1 + np.arange(7)), atol=1e-6)
    assert item["text"] == "close the drawer" and ds[0]["text"] == "open the drawer"
    assert abs(float((item["frames"] + 1).mul(127.5).mean()) - 60) < 2  # first camera by default
    wrist = open_training_dataset(root, cfg, camera="wrist_image")
    assert abs(float((wrist[13]["frames"] + 1).mul(127.5).mean()) - 200) < 2
    with pytest.raises(DatasetError, match="no camera 'side'"):
        open_training_dataset(root, cfg, camera="side")
    with pytest.raises(DatasetError, match="action has 7 dims; model tiny commands 6"):
        open_training_dataset(root, dataclasses.replace(cfg, action=ActionConfig(real_dim=6, dim=8, horizon=8)))
