"""Sessions on the simulated G1: the node sets they start, the demo's statistics and contact sheet,
and the demo itself as real processes (one episode, random weights: the plumbing, not the skill)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from dit4dit_policy.config import load_yaml
from dit4dit_policy.demo import acceleration_summary, beyond_limits, contact_sheet, run, wilson_interval
from dit4dit_policy.runner import console_scripts
from dit4dit_policy.sim_session import SessionSettings, collect, stack_specs


def test_when_expert_drives_expect_bridge_on_the_teleop_stream_and_a_recorder(tmp_path):
    specs = stack_specs(150, "expert", SessionSettings.load(), recordings=tmp_path)
    assert list(specs) == ["sim", "bridge", "expert", "recorder"]
    teleop = load_yaml("expert.yaml")["sim_expert"]["ros__parameters"]["topics"]["command"]
    assert teleop == load_yaml("recorder.yaml")["recorder"]["ros__parameters"]["topics"]["teleop_command"]
    assert specs["bridge"].overrides["topics.joint_command"] == teleop
    assert specs["bridge"].overrides["dds_domain"] == specs["sim"].overrides["dds_domain"] == 150
    assert specs["recorder"].overrides["output_dir"] == str(tmp_path)
    assert {s.executable for s in specs.values()} <= set(console_scripts())


def test_when_policy_drives_expect_the_policy_nodes_command_topic_and_the_session_instruction(tmp_path):
    settings = SessionSettings.load()
    specs = stack_specs(151, "policy", settings, checkpoint=tmp_path)
    assert list(specs) == ["sim", "bridge", "policy"]
    policy_topics = load_yaml("policy.yaml")["policy_node"]["ros__parameters"]["topics"]
    assert specs["bridge"].overrides["topics.joint_command"] == policy_topics["joint_command"]
    assert specs["policy"].overrides == {"checkpoint": str(tmp_path), "instruction": settings.instruction}
    # The simulator-only relaxations reach the bridge, nothing else does.
    assert settings.bridge_overrides.items() <= specs["bridge"].overrides.items()


def test_when_corrections_expect_the_policy_driving_and_the_expert_recorded_as_the_teleoperator(tmp_path):
    settings = SessionSettings.load()
    specs = stack_specs(152, "corrections", settings, checkpoint=tmp_path / "ckpt", recordings=tmp_path / "rec")
    assert list(specs) == ["sim", "bridge", "policy", "expert", "recorder"]
    params = {f: load_yaml(f"{f}.yaml") for f in ("policy", "expert", "recorder")}
    policy_command = params["policy"]["policy_node"]["ros__parameters"]["topics"]["joint_command"]
    expert_command = params["expert"]["sim_expert"]["ros__parameters"]["topics"]["command"]
    assert specs["bridge"].overrides["topics.joint_command"] == policy_command != expert_command
    assert params["recorder"]["recorder"]["ros__parameters"]["topics"]["teleop_command"] == expert_command
    assert specs["policy"].overrides["checkpoint"] == str(tmp_path / "ckpt")
    assert specs["recorder"].overrides["output_dir"] == str(tmp_path / "rec")


def test_when_driver_or_its_input_is_wrong_expect_clear_errors(tmp_path):
    settings = SessionSettings.load()
    with pytest.raises(ValueError, match="driver must be one of"):
        stack_specs(150, "joystick", settings)
    with pytest.raises(ValueError, match="recordings folder"):
        stack_specs(150, "expert", settings)
    with pytest.raises(ValueError, match="needs a checkpoint"):
        stack_specs(150, "policy", settings)
    with pytest.raises(ValueError, match="corrections driver needs a checkpoint"):
        stack_specs(150, "corrections", settings, recordings=tmp_path)
    with pytest.raises(ValueError, match="corrections driver records"):
        stack_specs(150, "corrections", settings, checkpoint=tmp_path)


def test_when_rate_is_8_of_10_expect_the_published_wilson_interval():
    low, high = wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))


@pytest.mark.parametrize(("k", "n"), [(0, 5), (5, 5), (13, 50), (40, 50)])
def test_when_interval_computed_expect_it_holds_the_rate_inside_0_1_and_mirrors(k, n):
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0 and high - low > 0
    mirror = wilson_interval(n - k, n)
    assert (low, high) == (pytest.approx(1 - mirror[1]), pytest.approx(1 - mirror[0]))


def test_when_a_command_stream_is_checked_expect_samples_beyond_velocity_and_acceleration_counted():
    t = 0.02 * np.arange(6)
    smooth = np.stack([0.5 * t, np.zeros(6)], axis=1)  # 0.5 rad/s, no acceleration
    vmax, amax = np.array([1.0, 1.0]), np.array([10.0, 10.0])
    assert beyond_limits(t, smooth, vmax, amax) == {"velocity": 0, "acceleration": 0}
    jump = smooth.copy()
    jump[3:, 1] += 0.03  # one step of 1.5 rad/s in joint 1: its velocity once, its acceleration twice
    assert beyond_limits(t, jump, vmax, amax) == {"velocity": 1, "acceleration": 2}
    assert beyond_limits(t[:2], smooth[:2], vmax, amax) == {"velocity": 0, "acceleration": 0}
    with pytest.raises(ValueError, match="strictly increasing"):
        beyond_limits(t[::-1], smooth, vmax, amax)


def test_when_streams_accelerate_expect_rms_and_p99_of_every_joint_sample_over_all_streams():
    t = np.concatenate([[0.0], 0.01 + 0.02 * np.arange(1, 40)])  # one uneven interval first
    # Joint 0 at a constant 4 rad/s^2 (a parabola's second difference is exact at any spacing);
    # joint 1 at rest. A second, shorter stream at -8 rad/s^2 in joint 1.
    first = np.stack([2.0 * t**2, np.zeros_like(t)], axis=1)
    second = np.stack([np.zeros(10), -4.0 * t[:10] ** 2], axis=1)
    got = acceleration_summary([(t, first), (t[:10], second)])
    # 84 joint-samples at 4 or 0 rad/s^2 and 8 at 8: more than the top 1 % of 92, so p99 is 8.
    assert got["rms"] == pytest.approx(np.sqrt((38 * 16.0 + 8 * 64.0) / 92))
    assert got["p99"] == pytest.approx(8.0)
    assert all(np.isnan(v) for v in acceleration_summary([]).values())


def test_when_frames_tiled_expect_each_in_its_cell_at_scale(tmp_path):
    frames = [np.full((3, 4, 3), 20 * i, np.uint8) for i in range(5)]
    path = contact_sheet(frames, columns=3, path=tmp_path / "sheet.png", scale=2)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (2 * 3 * 2, 3 * 4 * 2, 3)
    assert sheet[0, 0, 0] == 0 and sheet[0, 8, 0] == 20 and sheet[6, 8, 0] == 80
    assert sheet[6, 16, 0] == 0  # the unused sixth cell stays black
    with pytest.raises(ValueError, match="no camera frames"):
        contact_sheet([], 3, tmp_path / "none.png")


@pytest.mark.slow
def test_when_demo_runs_one_episode_expect_report_with_the_stacks_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    from dit4dit_policy.runtime.bench import random_checkpoint

    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    report = run(tmp_path / "demo", 1, checkpoint, Console(width=110, quiet=True))
    written = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert written["episodes"] == 1 and len(written["results"]) == 1
    assert written["success_rate"] in (0.0, 1.0)
    # The policy ran inside the stack: it inferred, and its chunks reached the bridge.
    assert int(report["policy"]["inferences"]) > 0
    assert int(report["bridge"]["accepted"]) > 0
    assert (tmp_path / "demo" / "episode_0.png").is_file()
    # The episode's commands as the policy published them: its joints, strictly increasing stamps.
    joints = load_yaml("policy.yaml")["policy_node"]["ros__parameters"]["action_joints"]
    with np.load(written["commands"]) as commands:
        assert list(commands["joints"]) == joints
        stamps, positions = commands["stamps_000"], commands["positions_000"]
    assert stamps.size > 100 and np.all(np.diff(stamps) > 0)
    assert positions.shape == (stamps.size, len(joints)) and np.all(np.isfinite(positions))
    # Its roughness is of those very commands.
    assert written["safety"]["policy_command_acceleration"] == pytest.approx(
        acceleration_summary([(stamps, positions)])
    )


@pytest.mark.slow
def test_when_collecting_corrections_expect_a_recorded_episode_of_the_experts_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    from dit4dit_policy.data.bag_episode import read_bag_episode
    from dit4dit_policy.runtime.bench import random_checkpoint

    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    settings = SessionSettings.load()
    settings = dataclasses.replace(settings, collect={**settings.collect, "corrections_timeout": 4.0})
    result = collect(tmp_path / "rec", 1, Console(quiet=True), settings, policy=checkpoint)
    assert len(result["episodes"]) == 1
    episode = read_bag_episode(tmp_path / "rec" / "episode_000000")
    # The expert watched the whole episode (4 s at 50 Hz) and its commands are the recorded actions.
    assert len(episode.commands.stamps) > 100
    assert episode.commands.names == tuple(load_yaml("policy.yaml")["policy_node"]["ros__parameters"]["action_joints"])
    assert min(len(c.stamps) for c in episode.cameras.values()) > 60
