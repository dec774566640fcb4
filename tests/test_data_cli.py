"""`dit4dit convert` and `dit4dit dataset-info` end to end."""

from __future__ import annotations

import json
import re

import pytest
from test_data_xr_import import make_episode

from dit4dit_policy.cli import main
from dit4dit_policy.data.synthetic import SyntheticEpisode, write_bag_episode


def test_when_converting_then_describing_expect_dataset_summary_and_refusal_to_overwrite(tmp_path, capsys):
    for i in range(2):
        write_bag_episode(tmp_path / "rec" / f"episode_{i:06d}", SyntheticEpisode(duration=1.0))
    write_bag_episode(
        tmp_path / "rec" / "episode_000002", SyntheticEpisode(duration=1.0, metadata={"task": "x", "success": False})
    )
    assert main(["convert", str(tmp_path / "rec"), str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "skipped episode_000002: not marked successful" in out
    assert "wrote" in out and "2 episodes, 22 frames (2.2 s) from rosbag2 recordings" in out

    assert main(["dataset-info", str(tmp_path / "ds"), "--json", str(tmp_path / "info.json")]) == 0
    assert "checked: all 2 episodes readable" in capsys.readouterr().out
    summary = json.loads((tmp_path / "info.json").read_text())
    assert (summary["episodes"], summary["frames"], summary["fps"]) == (2, 22, 10.0)
    assert summary["state_names"][0] == "right_shoulder_pitch_joint" and summary["action_dim"] == 7
    assert summary["camera"] == "observation.images.camera_color_image_raw"
    assert summary["conversion"]["skipped"][0]["source"] == "episode_000002"

    assert main(["convert", str(tmp_path / "rec"), str(tmp_path / "ds")]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "rec"), str(tmp_path / "ds"), "--force", "--rate", "5"]) == 0
    assert json.loads((tmp_path / "ds/meta/info.json").read_text())["fps"] == 5


def test_when_converting_xr_episodes_expect_their_first_camera_by_default(tmp_path, capsys):
    make_episode(tmp_path / "xr", idxs=range(31))
    assert main(["convert", str(tmp_path / "xr"), str(tmp_path / "ds")]) == 0
    assert "1 episodes, 10 frames" in capsys.readouterr().out
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert "observation.images.color_0" in info["features"]


@pytest.mark.parametrize(
    "args,match",
    [
        (["dataset-info", "{tmp}/nothing"], "not a LeRobot dataset"),
        (["convert", "{tmp}", "{tmp}/ds"], "no episode_\\* folder with a bag or data.json"),
        (["convert", "{tmp}", "{tmp}/ds", "--params", "nope.yaml"], "nope.yaml"),
    ],
)
def test_when_input_is_wrong_expect_exit_2_and_the_reason(tmp_path, capsys, args, match):
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    assert re.search(match, capsys.readouterr().err)
