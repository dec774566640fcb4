"""Closed-loop replay (`dit4dit replay-bag`) as real processes: loopback robot, safety bridge, policy
node on a random tiny checkpoint and the bag player, twice (at two speeds), then compared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dit4dit_policy.cli import main
from dit4dit_policy.config import load_yaml
from dit4dit_policy.data.synthetic import SyntheticEpisode, camera_stamps, write_bag_episode
from dit4dit_policy.evaluation.replay_record import ReplayRecord
from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.runtime.bench import random_checkpoint

# Long enough that a 2x replay still gives the policy ~1 s of wall clock to command in.
SPEC = SyntheticEpisode(duration=2.0)
MARGIN = 0.25  # the synthetic joint states begin this long before the first camera frame
ARM = tuple(load_yaml("policy.yaml")["policy_node"]["ros__parameters"]["action_joints"])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("replay")
    return write_bag_episode(root / "episode_000000", SPEC), random_checkpoint("tiny", root / "checkpoint")


@pytest.mark.ros
@pytest.mark.slow
def test_when_an_episode_is_replayed_twice_expect_commands_on_the_recorded_time_axis_and_a_comparison(inputs, tmp_path):
    episode, checkpoint = inputs
    base = ["--checkpoint", str(checkpoint), "--policy-set", "torch_threads=1", "--bridge-set", "ramp_time=0.3"]
    runs = {"slow": 1.0, "fast": 2.0}
    for name, speed in runs.items():
        args = ["replay-bag", str(episode), *base, "--speed", str(speed), "--out", str(tmp_path / name)]
        assert main(args) == 0

    first_frame, last_frame = camera_stamps(SPEC)[[0, -1]] - (SPEC.start - MARGIN)  # recorded s since the bag's start
    policy = load_yaml("policy.yaml")["policy_node"]["ros__parameters"]
    max_frame_age, control_rate = policy["max_frame_age"], policy["control_rate_hz"]
    table = load_joint_table()
    for name, speed in runs.items():
        record = ReplayRecord.read(tmp_path / name)
        info = record.info
        assert info["exit_codes"] == {"player": 0, "policy": 0, "bridge": 0, "robot": 0}
        assert info["player"]["state"] == "finished" and info["speed"] == speed
        assert info["policy_status"]["inference_failures"] == "0"
        assert record.names == ARM
        command, wire = record.command, record.wire
        # At least half the ticks of the replayed frames' span: start-up (first inference, ramp) and
        # a loaded machine may take some, a stalled policy would take most.
        ticks = control_rate * (last_frame - first_frame) / speed
        assert command.t.size > ticks / 2, f"{command.t.size} commands in {ticks:.0f} ticks at {speed}x"
        assert wire.t.size > ticks / 2
        # The policy cannot command before the first frame, and stops once the last is max_frame_age
        # old (wall-clock seconds: speed x as many recorded ones).
        assert first_frame < command.t[0] and command.t[-1] <= last_frame + max_frame_age * speed + 1e-6
        assert np.all(np.isfinite(command.q)) and np.all(np.isfinite(wire.q))
        limits = [table.joints[table.index(n)].limits for n in record.names]
        assert np.all(wire.q >= [lim.min_position for lim in limits])
        assert np.all(wire.q <= [lim.max_position for lim in limits])
        assert (tmp_path / name / "replay.png").read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / name / "logs" / "policy.log").is_file()

    out = tmp_path / "comparison"
    assert main(["compare-replays", str(tmp_path / "slow"), str(tmp_path / "fast"), "--out", str(out)]) == 0
    result = json.loads((out / "comparison.json").read_text())
    assert result["episode"] == "episode_000000" and result["b"]["speed"] == 2.0
    for stream in ("command", "wire"):
        figures = result["streams"][stream]
        assert figures["both"] > 0.5 * figures["grid_points"], f"the two replays' {stream} streams hardly overlap"
        assert set(figures["difference"]["per_joint"]) == set(record.names)


def test_when_inputs_are_missing_or_the_output_exists_expect_an_error_before_anything_starts(inputs, tmp_path, capsys):
    episode, checkpoint = inputs
    out = tmp_path / "replay"
    assert main(["replay-bag", str(tmp_path / "nope"), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert f"{tmp_path / 'nope'}: no such episode folder" in capsys.readouterr().err
    assert main(["replay-bag", str(episode), "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out)]) == 2
    assert f"checkpoint {tmp_path / 'ckpt'}: no such folder" in capsys.readouterr().err
    assert main(["replay-bag", str(episode), "--checkpoint", str(checkpoint), "--out", str(out), "--speed", "0"]) == 2
    assert "speed must be a finite number > 0" in capsys.readouterr().err
    args = ["replay-bag", str(episode), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main([*args, "--bridge-set", "ramp_time"]) == 2
    assert "expected NAME=VALUE, got 'ramp_time'" in capsys.readouterr().err
    assert not out.exists()

    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert main(["replay-bag", str(episode), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
