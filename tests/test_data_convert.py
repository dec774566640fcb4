"""Recordings -> LeRobot v2.1 dataset: resampling against an independent oracle, layout, refusals."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_data_xr_import import make_episode

from dit4dit_policy.data import synthetic
from dit4dit_policy.data.convert import ConversionError, ConversionSpec, convert, xr_column_names
from dit4dit_policy.data.lerobot import read_meta
from dit4dit_policy.data.synthetic import SyntheticEpisode, write_bag_episode
from dit4dit_policy.data.video import decode_video
from dit4dit_policy.joint_table import load_joint_table

CAMERA = "/camera/color/image_raw"
RIGHT_ARM = tuple(n for n in synthetic.ARM_JOINTS if n.startswith("right_"))
SPEC = ConversionSpec(state_joints=RIGHT_ARM, action_joints=RIGHT_ARM, rate=10.0, slop=0.02, camera=CAMERA)
EPISODES = (
    SyntheticEpisode(duration=2.0, camera_jitter=0.004),
    SyntheticEpisode(duration=1.5, encoding="png", start=1_700_000_100.0),
)


def _record(root, specs=EPISODES):
    for i, spec in enumerate(specs):
        write_bag_episode(root / f"episode_{i:06d}", spec)
    return root


def _ns(stamps):
    return np.round(stamps * 1e9) / 1e9  # bags store nanoseconds


def _expected_rows(spec):
    """Independent oracle: a 10 Hz grid from the first camera frame (every stream covers it); per
    row the nearest frame, the joint state nearest that frame, and the command 0.1 s later."""
    frames = _ns(synthetic.camera_stamps(spec))
    joints = _ns(synthetic.joint_stamps(spec))
    commands = _ns(synthetic.command_stamps(spec))
    rows = []
    t = frames[0]
    while t <= min(frames[-1] + 0.05, commands[-1] - 0.1):
        f = int(np.argmin(np.abs(frames - t)))
        j = int(np.argmin(np.abs(joints - frames[f])))
        rows.append((t, f, joints[j]))
        t = frames[0] + len(rows) / 10
    names = load_joint_table().names
    cols = [names.index(n) for n in RIGHT_ARM]
    state = np.stack([synthetic.joint_positions(np.array([js]), names, spec.start)[0, cols] for _, _, js in rows])
    right = [spec.command_joints.index(n) for n in RIGHT_ARM]
    action = synthetic.commanded(np.array([t + 0.1 for t, _, _ in rows]), spec.command_joints, spec.start)[:, right]
    return [f for _, f, _ in rows], state, action


def test_when_converting_bags_expect_rows_paired_and_timed_as_the_oracle_says(tmp_path):
    report = convert(_record(tmp_path / "rec"), tmp_path / "ds", SPEC)
    assert report.episodes == ["episode_000000", "episode_000001"] and report.skipped == []
    meta = read_meta(tmp_path / "ds")
    key = "observation.images.camera_color_image_raw"
    offset = 0
    for index, spec in enumerate(EPISODES):
        frames, state, action = _expected_rows(spec)
        table = pq.read_table(meta.data_path(index)).to_pydict()
        n = len(frames)
        assert meta.episodes[index]["length"] == n and len(table["index"]) == n
        np.testing.assert_allclose(np.array(table["observation.state"]), state, atol=1e-6)
        np.testing.assert_allclose(np.array(table["action"]), action, atol=2e-6)
        np.testing.assert_allclose(table["timestamp"], np.arange(n) / 10, atol=1e-6)
        assert table["frame_index"] == list(range(n))
        assert table["index"] == list(range(offset, offset + n))
        assert table["episode_index"] == [index] * n and table["task_index"] == [0] * n
        offset += n

        video = np.concatenate(list(decode_video(meta.video_path(index, key))))
        assert len(video) == n
        for row, f in enumerate(frames):
            expected = synthetic.frame_rgb(f, spec.height, spec.width)
            # The blue level names the frame: neighbours are 6 levels apart, coding moves it by ~1.
            assert abs(video[row, ..., 2].mean() - synthetic.frame_level(f)) < 2.5, (index, row, f)
            # A 32x24 frame codes worst (chroma is stored at half resolution): still a few levels.
            assert np.abs(video[row].astype(int) - expected).mean() < 4


def test_when_converting_expect_lerobot_v21_meta_with_stats_and_gr00t_modality(tmp_path):
    convert(_record(tmp_path / "rec"), tmp_path / "ds", SPEC)
    meta = read_meta(tmp_path / "ds")
    info = meta.info
    n0, n1 = (len(_expected_rows(s)[0]) for s in EPISODES)
    assert info["codebase_version"] == "v2.1" and info["fps"] == 10
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, n0 + n1, 1)
    assert info["features"]["observation.state"]["names"] == list(RIGHT_ARM)
    assert info["features"]["action"]["shape"] == [7]
    video = info["features"]["observation.images.camera_color_image_raw"]
    assert video["dtype"] == "video" and video["shape"] == [24, 32, 3] and video["info"]["video.codec"] == "h264"
    assert meta.tasks == {0: "put the cup on the plate"}
    assert [meta.episodes[i]["source"] for i in (0, 1)] == ["episode_000000", "episode_000001"]
    assert meta.episodes[0]["recording"] == EPISODES[0].metadata
    assert meta.modality["action"] == {"joints": {"start": 0, "end": 7, "original_key": "action"}}

    actions = np.concatenate([np.array(pq.read_table(meta.data_path(i)).column("action").to_pylist()) for i in (0, 1)])
    np.testing.assert_allclose(meta.stats["action"]["min"], actions.min(axis=0), atol=1e-7)
    np.testing.assert_allclose(meta.stats["action"]["max"], actions.max(axis=0), atol=1e-7)
    np.testing.assert_allclose(meta.stats["action"]["mean"], actions.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(meta.stats["action"]["std"], actions.std(axis=0), atol=1e-6)
    assert meta.stats["action"]["count"] == [n0 + n1]
    np.testing.assert_allclose(meta.stats["action"]["q99"], np.quantile(actions, 0.99, axis=0), atol=1e-7)
    assert set(meta.stats["observation.state"]) == {"min", "max", "mean", "std", "count", "q01", "q99"}
    episode_stats = [json.loads(line) for line in (tmp_path / "ds/meta/episodes_stats.jsonl").read_text().splitlines()]
    blue_mean = episode_stats[0]["stats"]["observation.images.camera_color_image_raw"]["mean"][2][0][0]
    assert 0 < blue_mean < 1 and np.array(episode_stats[0]["stats"]["action"]["min"]).shape == (7,)
    conversion = json.loads((tmp_path / "ds/meta/conversion.json").read_text())
    assert conversion["rate"] == 10.0 and conversion["camera"] == CAMERA and conversion["source_format"] == "rosbag2"


def test_when_target_exists_expect_refusal_unless_forced_and_never_a_non_dataset_replaced(tmp_path):
    rec = _record(tmp_path / "rec", EPISODES[:1])
    convert(rec, tmp_path / "ds", SPEC)
    (tmp_path / "ds" / "mine").write_text("kept")
    with pytest.raises(FileExistsError, match="already exists; pass --force"):
        convert(rec, tmp_path / "ds", SPEC)
    assert (tmp_path / "ds" / "mine").read_text() == "kept"
    convert(rec, tmp_path / "ds", SPEC, force=True)
    assert not (tmp_path / "ds" / "mine").exists() and (tmp_path / "ds/meta/info.json").is_file()

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a dataset"):
        convert(rec, tmp_path / "notes", SPEC, force=True)
    assert (tmp_path / "notes" / "a.txt").read_text() == "x"
    with pytest.raises(ConversionError, match="would contain the recordings"):
        convert(rec, tmp_path, SPEC, force=True)


def test_when_an_episode_is_bad_expect_error_naming_it_and_the_old_dataset_untouched(tmp_path, monkeypatch):
    rec = _record(tmp_path / "rec", EPISODES[:1])
    convert(rec, tmp_path / "ds", SPEC)

    original = synthetic.commanded

    def with_nan(t, names, start):
        values = original(t, names, start)
        values[len(values) // 2, names.index("right_elbow_joint")] = np.nan
        return values

    monkeypatch.setattr(synthetic, "commanded", with_nan)
    write_bag_episode(rec / "episode_000001", SyntheticEpisode(duration=1.0))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(
        ConversionError, match=r"episode_000001: /teleop/joint_command has NaN/inf for right_elbow_joint at"
    ):
        convert(rec, tmp_path / "ds", SPEC, force=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "a failed conversion left traces"


def test_when_camera_drops_frames_expect_the_episode_skipped_naming_the_gap(tmp_path, monkeypatch):
    rec = tmp_path / "rec"
    write_bag_episode(rec / "episode_000000", EPISODES[0])
    original = synthetic.camera_stamps
    monkeypatch.setattr(synthetic, "camera_stamps", lambda spec: np.delete(original(spec), range(20, 30)))
    write_bag_episode(rec / "episode_000001", EPISODES[0])
    report = convert(rec, tmp_path / "ds", SPEC)
    assert report.episodes == ["episode_000000"]
    [(name, reason)] = report.skipped
    assert name == "episode_000001" and "camera gap: no frame within 0.050 s of" in reason


def test_when_joint_or_camera_is_not_recorded_expect_error_naming_it(tmp_path):
    rec = _record(tmp_path / "rec", EPISODES[:1])
    spec = ConversionSpec(state_joints=("right_gripper",), action_joints=RIGHT_ARM, rate=10.0, slop=0.02, camera=CAMERA)
    with pytest.raises(ConversionError, match=r"episode_000000: .*no joint\(s\) \['right_gripper'\]"):
        convert(rec, tmp_path / "ds", spec)
    spec = ConversionSpec(state_joints=RIGHT_ARM, action_joints=RIGHT_ARM, rate=10.0, slop=0.02, camera="/head/image")
    with pytest.raises(ConversionError, match=r"episode_000000: no camera topic '/head/image'"):
        convert(rec, tmp_path / "ds", spec)


def test_when_joint_states_stall_in_an_episode_expect_it_skipped_with_the_gap_named(tmp_path):
    # 5 Hz joint states leave frames with no joint state within the 0.02 s slop, as a stalled stream does.
    rec = _record(tmp_path / "rec", [SyntheticEpisode(duration=1.0), SyntheticEpisode(duration=1.0, joint_rate=5.0)])
    report = convert(rec, tmp_path / "ds", SPEC)
    assert report.episodes == ["episode_000000"]
    [(name, reason)] = report.skipped
    assert name == "episode_000001" and "timing gap: no joint state within slop 0.02 s" in reason


def test_when_episodes_are_unsuccessful_or_unfinished_expect_them_skipped_and_listed(tmp_path):
    specs = [
        SyntheticEpisode(duration=1.0, metadata={"task": "a", "success": True, "status": "complete"}),
        SyntheticEpisode(duration=1.0, metadata={"task": "a", "success": False, "status": "complete"}),
        SyntheticEpisode(duration=1.0, metadata={"task": "a", "success": None, "status": "interrupted"}),
        SyntheticEpisode(duration=1.0, metadata={"task": "a", "success": None, "status": "recording"}),
    ]
    rec = _record(tmp_path / "rec", specs)
    (rec / "episode_000004").mkdir()
    (rec / "episode_000004" / "episode.json").write_text(json.dumps({"status": "recording"}))
    report = convert(rec, tmp_path / "ds", SPEC)
    assert report.episodes == ["episode_000000"]
    assert [name for name, _ in report.skipped] == [f"episode_{i:06d}" for i in (1, 2, 3, 4)]
    conversion = json.loads((tmp_path / "ds/meta/conversion.json").read_text())
    assert "success False" in conversion["skipped"][0]["reason"]
    assert "unfinished" in conversion["skipped"][3]["reason"]

    report = convert(rec, tmp_path / "ds", SPEC, force=True, include_failed=True)
    assert report.episodes == [f"episode_{i:06d}" for i in (0, 1, 2)]
    only_failed = _record(tmp_path / "failed", specs[1:2])
    with pytest.raises(ConversionError, match=r"no episode to convert \(1 skipped\)"):
        convert(only_failed, tmp_path / "none", SPEC)
    assert not (tmp_path / "none").exists()


def test_when_converting_xr_episodes_expect_arm_columns_by_joint_name_and_the_same_timing(tmp_path):
    rec = tmp_path / "xr"
    for number in (0, 1):
        make_episode(rec, number=number, idxs=range(31))  # 1 s at 30 fps
    spec = ConversionSpec(state_joints=RIGHT_ARM, action_joints=RIGHT_ARM, rate=10.0, slop=0.02, camera=None)
    report = convert(rec, tmp_path / "ds", spec)
    assert report.source_format == "xr" and report.episodes == ["episode_0000", "episode_0001"]
    meta = read_meta(tmp_path / "ds")
    table = pq.read_table(meta.data_path(1)).to_pydict()
    # make_episode: right_arm qpos = idx + 0.2 + 0.01 j (state), idx + 100.2 + 0.01 j (action).
    rows = np.arange(10)  # 10 Hz from 0 s; the last row needs the action 0.1 s later (idx 30)
    j = 0.01 * np.arange(7)
    np.testing.assert_allclose(np.array(table["observation.state"]), 3 * rows[:, None] + 0.2 + j, atol=1e-5)
    np.testing.assert_allclose(np.array(table["action"]), 3 * rows[:, None] + 3 + 100.2 + j, atol=1e-4)
    assert meta.tasks == {0: "pick cube 0", 1: "pick cube 1"}
    assert "observation.images.color_0" in meta.video_keys


def test_when_naming_xr_columns_expect_joint_table_arm_names_then_hand_values():
    slices = {"left_arm": slice(0, 7), "right_arm": slice(7, 14), "left_ee": slice(14, 20), "right_ee": slice(20, 26)}
    names = xr_column_names(slices)
    assert names[:3] == ["left_shoulder_pitch_joint", "left_shoulder_roll_joint", "left_shoulder_yaw_joint"]
    assert names[7:14] == list(RIGHT_ARM)
    assert names[14:] == [f"left_ee_{i}" for i in range(6)] + [f"right_ee_{i}" for i in range(6)]


def test_when_spec_comes_from_the_policy_parameters_expect_its_joints_slop_camera_and_rate():
    spec = ConversionSpec.from_policy_params()
    assert spec.state_joints == RIGHT_ARM and spec.action_joints == RIGHT_ARM
    assert (spec.rate, spec.slop, spec.camera) == (10.0, 0.02, CAMERA)
    assert ConversionSpec.from_policy_params(rate=5.0, camera="/x").rate == 5.0
    with pytest.raises(ValueError, match="distinct"):
        ConversionSpec(state_joints=("a", "a"), action_joints=("b",), rate=10.0, slop=0.0, camera=None)


def test_when_the_recorders_own_writer_made_the_episode_expect_the_same_rows(tmp_path):
    """The recorder's contract end to end: an episode written by dit4dit_policy.recording's
    EpisodeWriter (markers, latched instruction, episode.json) converts like the synthetic bag."""
    from dit4dit_policy.recording import EpisodeInfo, EpisodeWriter, TopicSpec, joint_table_hash
    from dit4dit_policy.recording.writer import string_cdr

    spec = SyntheticEpisode(duration=1.5, markers=False, instructions=())
    task = "put the cup on the plate"
    info = EpisodeInfo(
        episode=0,
        status="recording",
        task=task,
        operator="test",
        robot_variant="g1_29dof",
        joint_table="g1_29dof.yaml",
        joint_table_hash=joint_table_hash("g1_29dof.yaml"),
        started_at="2026-01-01T00:00:00.000+00:00",
        start_time_ns=0,
    )
    messages = list(synthetic.recorded_messages(spec))
    writer = EpisodeWriter(
        tmp_path / "rec" / "episode_000000",
        [TopicSpec(topic, kind) for topic, kind in synthetic.topic_types(spec).items()],
        "/recorder/episode",
        info,
        max_queue_bytes=1 << 30,
        flush_period=1.0,
        start_ns=messages[0][0],
        initial=[("/dit4dit/instruction", string_cdr(task))],
    )
    for receive_ns, topic, data in messages:
        assert writer.write(topic, receive_ns, data)
    writer.close(success=True, end_ns=messages[-1][0])

    report = convert(tmp_path / "rec", tmp_path / "ds", SPEC)
    assert report.episodes == ["episode_000000"]
    meta = read_meta(tmp_path / "ds")
    frames, state, action = _expected_rows(spec)
    table = pq.read_table(meta.data_path(0)).to_pydict()
    np.testing.assert_allclose(np.array(table["observation.state"]), state, atol=1e-6)
    np.testing.assert_allclose(np.array(table["action"]), action, atol=2e-6)
    assert meta.tasks == {0: task}
    assert meta.episodes[0]["recording"]["status"] == "complete"
