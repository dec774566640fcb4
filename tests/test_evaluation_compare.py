"""Comparing two replays (`dit4dit compare-replays`) on made-up command streams with known differences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dit4dit_policy.cli import main
from dit4dit_policy.evaluation.compare import compare_replays, held_values
from dit4dit_policy.evaluation.replay_record import ReplayRecord, Stream

NAMES = ("right_elbow_joint", "right_wrist_roll_joint", "waist_yaw_joint")


def record(command: Stream, wire: Stream, episode: str = "episode_000000", names=NAMES) -> ReplayRecord:
    return ReplayRecord(names, command, wire, {"episode_name": episode, "checkpoint": "ckpt", "speed": 1.0})


def ramp(t: np.ndarray) -> np.ndarray:
    return np.stack([0.5 * t, -0.2 * t, 0.1 + 0 * t], axis=1)


def test_when_holding_values_on_a_grid_expect_the_newest_sample_and_nan_once_it_is_too_old():
    stream = Stream(np.array([0.0, 0.02, 0.3]), np.array([[1.0], [2.0], [3.0]]))
    got = held_values(stream, np.array([-0.01, 0.0, 0.01, 0.02, 0.12, 0.13, 0.3, 0.5]), max_age=0.1)
    np.testing.assert_array_equal(got[:, 0], [np.nan, 1.0, 1.0, 2.0, 2.0, np.nan, 3.0, np.nan])


def test_when_one_joint_differs_and_one_replay_stops_early_expect_both_in_the_figures():
    t = np.arange(200) / 100  # 100 Hz, read on a 50 Hz grid
    pose = np.tile([0.3, -0.2, 0.1], (t.size, 1))  # constant, so that B holding its last value changes nothing
    a = record(Stream(t, pose), Stream(t, ramp(t)))
    short = t < 1.495
    b = record(Stream(t[short], pose[short] + [0.0, 0.1, 0.0]), Stream(t, ramp(t)))
    result = compare_replays(a, b)

    command = result["streams"]["command"]
    grid = np.arange(command["grid_points"]) / 50
    # B's last sample (1.49 s) is held for 0.1 s: from the grid point at 1.60 on only A commands.
    assert command["only_a"] == int(np.sum(grid >= 1.6 - 1e-9)) > 0 and command["only_b"] == 0
    assert command["both"] + command["only_a"] == command["grid_points"]
    difference = command["difference"]
    assert difference["per_joint"]["right_wrist_roll_joint"] == pytest.approx({"mae": 0.1, "rmse": 0.1, "max_abs": 0.1})
    assert difference["per_joint"]["right_elbow_joint"]["max_abs"] == pytest.approx(0.0, abs=1e-12)
    assert difference["per_group"]["arm"]["mae"] == pytest.approx(0.05)
    assert difference["per_group"]["waist"]["max_abs"] == pytest.approx(0.0, abs=1e-12)
    assert result["streams"]["wire"]["difference"]["max_abs"] == pytest.approx(0.0, abs=1e-12)


def test_when_the_replays_are_not_of_one_episode_or_joint_set_expect_a_clear_error():
    t = np.arange(0, 1.0, 0.02)
    a = record(Stream(t, ramp(t)), Stream(t, ramp(t)))
    with pytest.raises(ValueError, match="different episodes: episode_000000 and episode_000001"):
        compare_replays(a, record(a.command, a.wire, episode="episode_000001"))
    other = ("left_elbow_joint", *NAMES[1:])
    with pytest.raises(ValueError, match="different joints"):
        compare_replays(a, record(a.command, a.wire, names=other))


def test_when_compared_from_folders_expect_json_and_png_and_no_overwrite_unasked(tmp_path: Path, capsys):
    t = np.arange(0, 1.0, 0.02)
    folders = []
    for name, shift in (("old", 0.0), ("new", 0.25)):
        folder = tmp_path / name
        folder.mkdir()
        record(Stream(t, ramp(t) + shift), Stream(t, ramp(t))).write(folder)
        folders.append(str(folder))
    out = tmp_path / "cmp"
    assert main(["compare-replays", *folders, "--out", str(out)]) == 0
    result = json.loads((out / "comparison.json").read_text())
    assert result["a"]["folder"] == folders[0] and result["b"]["folder"] == folders[1]
    assert result["streams"]["command"]["difference"]["mae"] == pytest.approx(0.25)
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"

    (out / "comparison.json").write_text("mine")
    assert main(["compare-replays", *folders, "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (out / "comparison.json").read_text() == "mine"
    assert main(["compare-replays", folders[0], str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    assert "not a replay folder (no commands.npz)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
