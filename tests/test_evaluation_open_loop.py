"""Open-loop evaluation (`dit4dit eval-bag`) on a synthetic recording with known commands and a
random tiny checkpoint: what is evaluated, the errors against an independent oracle, the chunk
against the runtime called directly, and the command's handling of bad input and existing output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from dit4dit_policy.cli import main
from dit4dit_policy.config import load_yaml
from dit4dit_policy.data.synthetic import (
    SyntheticEpisode,
    camera_stamps,
    commanded,
    frame_rgb,
    joint_positions,
    write_bag_episode,
)
from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.runtime.bench import random_checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SPEC = SyntheticEpisode(duration=1.5)
PARAMS = load_yaml("policy.yaml")["policy_node"]["ros__parameters"]
ARM = tuple(PARAMS["action_joints"])  # the tiny preset's 7 right-arm joints
DT = PARAMS["action_period"]
HORIZON = 8  # the tiny preset's chunk


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(episode, checkpoint, output folder) of one eval-bag run through the command line."""
    import torch

    torch.set_num_threads(1)  # module-scoped: the function-scoped fixture is not active yet
    root = tmp_path_factory.mktemp("open_loop")
    episode = write_bag_episode(root / "episodes" / "episode_000000", SPEC)
    checkpoint = random_checkpoint("tiny", root / "checkpoint")
    out = root / "eval"
    assert main(["eval-bag", str(root / "episodes"), "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    return episode, checkpoint, out


def test_when_evaluated_expect_every_frame_whose_chunk_is_recorded_and_the_summary_fields(evaluated):
    _, checkpoint, out = evaluated
    summary = json.loads((out / "summary.json").read_text())
    # Independently: a frame counts if all its action times t + dt .. t + H dt lie within the commands.
    margin = 0.25  # the synthetic streams cover the camera's span with this margin
    frames = camera_stamps(SPEC)
    usable = (frames + DT >= SPEC.start - margin) & (frames + HORIZON * DT <= SPEC.start + SPEC.duration + margin)
    (episode,) = summary["episodes"]
    assert episode["observations"] == episode["eligible"] == int(usable.sum()) > 0
    skipped = {"chunk_outside_recorded_commands": int((~usable).sum()), "no_joint_state_within_slop": 0}
    assert episode["skipped"] == skipped
    assert summary["overall"]["observations"] == episode["observations"]
    assert summary["checkpoint"] == str(checkpoint) and summary["preset"] == "tiny"
    assert summary["action_joints"] == list(ARM) and summary["joint_groups"] == {"arm": list(ARM)}
    error = summary["overall"]["error"]
    assert set(error) == {"mae", "rmse", "max_abs", "per_group", "per_joint", "per_step", "per_group_step_mae"}
    assert [s["step"] for s in error["per_step"]] == list(range(HORIZON))
    assert [s["time_s"] for s in error["per_step"]] == pytest.approx(DT * np.arange(1, HORIZON + 1))
    assert len(error["per_group_step_mae"]["arm"]) == HORIZON
    latency = summary["overall"]["latency"]
    assert latency["count"] == episode["observations"] and 0 < latency["p50_ms"] <= latency["max_ms"]
    for png in (out / episode["plot"], out / summary["overall"]["plot"]):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_when_evaluated_expect_errors_against_the_recorded_future_commands(evaluated):
    _, _, out = evaluated
    summary = json.loads((out / "summary.json").read_text())
    data = np.load(out / "predictions" / "episode_000000.npz")
    stamps, predicted = data["obs_stamps"], data["predicted"]
    # The oracle: the synthetic commands are ramps, known at any time.
    times = stamps[:, None] + DT * np.arange(1, HORIZON + 1)
    right = [SPEC.command_joints.index(n) for n in ARM]
    oracle = commanded(times.ravel(), SPEC.command_joints, SPEC.start)[:, right].reshape(predicted.shape)
    np.testing.assert_allclose(data["recorded"], oracle, atol=1e-9)
    error = summary["overall"]["error"]
    diff = predicted - oracle
    elbow = np.abs(diff[..., ARM.index("right_elbow_joint")])
    assert error["per_joint"]["right_elbow_joint"]["mae"] == pytest.approx(elbow.mean())
    assert error["per_step"][3]["max_abs"] == pytest.approx(np.abs(diff[:, 3]).max())
    assert error["rmse"] == pytest.approx(np.sqrt(np.mean(diff**2)))


def test_when_a_chunk_is_recomputed_directly_expect_the_same_actions(evaluated):
    import torch

    from dit4dit_policy.preprocessing import image_to_model
    from dit4dit_policy.runtime.runtime import open_runtime

    episode, checkpoint, out = evaluated
    data = np.load(out / "predictions" / "episode_000000.npz")
    frame = int(data["frames"][0])
    t = camera_stamps(SPEC)[frame]
    # The joint state the node pairs with it: the nearest one (100 Hz from 0.25 s before the camera).
    joint_times = SPEC.start - 0.25 + np.arange(int(SPEC.duration * 100) + 51) / 100
    q = joint_positions(joint_times[[np.argmin(np.abs(joint_times - t))]], load_joint_table().names, SPEC.start)[0]
    state = q[[load_joint_table().index(n) for n in ARM]]
    runtime = open_runtime("torch", checkpoint)
    torch.manual_seed(0)  # eval-bag's default seed, drawn before its first inference
    image = image_to_model(frame_rgb(frame, SPEC.height, SPEC.width), "rgb8", runtime.cfg.observation.image_size)
    chunk = runtime.infer(image, state, "put the cup on the plate")
    np.testing.assert_allclose(data["predicted"][0], chunk, atol=1e-5)


def test_when_the_output_exists_expect_a_refusal_unless_forced(evaluated, capsys):
    episode, checkpoint, out = evaluated
    before = (out / "summary.json").read_text()
    args = ["eval-bag", str(episode), "--checkpoint", str(checkpoint), "--out", str(out), "--stride", "4"]
    assert main(args) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == before

    assert main([*args, "--force"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    eligible = summary["episodes"][0]["eligible"]
    assert summary["stride"] == 4 and summary["overall"]["observations"] == len(range(0, eligible, 4))


def test_when_the_bag_or_checkpoint_is_missing_expect_a_clear_error_and_no_output(evaluated, tmp_path, capsys):
    episode, checkpoint, _ = evaluated
    out = tmp_path / "eval"
    assert main(["eval-bag", str(tmp_path / "nope"), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert f"{tmp_path / 'nope'}: no such bag or folder of episodes" in capsys.readouterr().err
    assert main(["eval-bag", str(tmp_path), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "no episode_NNNNNN folders" in capsys.readouterr().err
    assert main(["eval-bag", str(episode), "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out)]) == 2
    assert f"checkpoint {tmp_path / 'ckpt'}: no such folder" in capsys.readouterr().err
    assert not out.exists()


def test_when_the_node_parameters_do_not_fit_the_recording_expect_an_error_naming_what(evaluated, tmp_path, capsys):
    episode, checkpoint, _ = evaluated
    params = {"policy_node": {"ros__parameters": {**PARAMS, "topics": {**PARAMS["topics"], "image": "/camera/left"}}}}
    (tmp_path / "camera.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "eval"
    args = ["eval-bag", str(episode), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main([*args, "--params", str(tmp_path / "camera.yaml")]) == 2
    assert "no camera topic '/camera/left'" in capsys.readouterr().err

    params["policy_node"]["ros__parameters"] = {**PARAMS, "action_joints": [*ARM[:-1], "waist_yaw_joint"]}
    (tmp_path / "waist.yaml").write_text(yaml.safe_dump(params))
    assert main([*args, "--params", str(tmp_path / "waist.yaml")]) == 2
    assert "/teleop/joint_command has no joint(s) ['waist_yaw_joint']" in capsys.readouterr().err

    params["policy_node"]["ros__parameters"] = {**PARAMS, "action_joints": list(ARM[:6])}
    (tmp_path / "short.yaml").write_text(yaml.safe_dump(params))
    assert main([*args, "--params", str(tmp_path / "short.yaml")]) == 2
    assert "takes 7 state joints and commands 7" in capsys.readouterr().err
    assert not out.exists()
