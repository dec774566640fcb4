"""Data-parallel training is the same training: two processes under torchrun (gloo, CPU), with DDP
and with FSDP, end with the weights (and validation figures) of one process trained on the same
global batches.

The runs go through the documented command,
    python -m torch.distributed.run --nproc_per_node 2 -m dit4dit_policy.training train --config FILE
on a generated dataset whose chunks run past their episode's end in some samples (masked action
entries that differ between the two processes' halves of a batch).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from training_synthetic import config_dict, write_dataset

from dit4dit_policy.model import build_model, load_preset
from dit4dit_policy.training.config import TrainConfig
from dit4dit_policy.training.run_folder import RunFolder, read_metrics
from dit4dit_policy.training.trainer import train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]
REPO = Path(__file__).resolve().parent.parent
STEPS = 3
# AdamW with eps 1 makes a step linear in the gradient where the gradient is small, so the weights
# compare the gradients; with eps 1e-8 Adam would blow float noise up to full steps wherever the
# true gradient is zero (e.g. attention key biases, which softmax ignores).
SETTINGS = {
    "train.steps": STEPS,
    "output.checkpoint_every": 2,  # checkpoints at steps 2 and 3 (the last)
    "validation.episodes": 1,
    "validation.every": STEPS,
    "optimizer.eps": 1.0,
    "optimizer.lr_video": 0.05,
    "optimizer.lr_action": 0.05,
}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The reference: one process, the same config."""
    tmp = tmp_path_factory.mktemp("single")
    write_dataset(tmp / "data", load_preset("tiny"), episodes=6, rows=3)
    train(TrainConfig.from_dict(config_dict(tmp, **SETTINGS), source="single"))
    return tmp


def torchrun(config: dict, folder: Path, *options: str) -> None:
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "dit4dit_policy.training", "train", "--config", str(path), *options,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def weights(folder: RunFolder, step: int) -> dict[str, torch.Tensor]:
    return load_file(folder.checkpoint(step) / "model.safetensors")


@pytest.fixture(scope="module")
def two_processes(single, tmp_path_factory):
    """parallel -> (run folder, config) of the same run under torchrun, run once per module."""
    runs = {}

    def run(parallel: str) -> tuple[RunFolder, dict]:
        if parallel not in runs:
            tmp = tmp_path_factory.mktemp(parallel)
            # FSDP as train_g1.yaml runs it: with gradient checkpointing (the same gradients).
            changes = {"train.parallel": parallel, "train.gradient_checkpointing": parallel == "fsdp"}
            config = config_dict(single, **SETTINGS, **changes, **{"output.dir": str(tmp / "run")})
            torchrun(config, tmp)
            runs[parallel] = (RunFolder(tmp / "run"), config)
        return runs[parallel]

    return run


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_when_two_processes_train_expect_the_weights_of_one_process(single, two_processes, parallel):
    one, (two, _) = RunFolder(single / "run"), two_processes(parallel)
    a, b = weights(one, STEPS), weights(two, STEPS)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    # ... and the steps moved the weights far beyond that tolerance
    torch.manual_seed(3)
    initial = build_model(load_preset("tiny")).state_dict()
    for part in ("action.", "video.transformer."):
        assert max((a[k] - initial[k]).abs().max().item() for k in a if k.startswith(part)) > 1e-3, part
    la, lb = read_metrics(one.metrics), read_metrics(two.metrics)
    assert lb["step"] == la["step"] == [1.0, 2.0, 3.0]
    assert lb["loss"] == pytest.approx(la["loss"], rel=1e-5)
    # validation splits its samples over the processes: the same figures
    assert lb["val_action_error"][-1] == pytest.approx(la["val_action_error"][-1], rel=1e-4)
    assert lb["val_copy_state_error"][-1] == pytest.approx(la["val_copy_state_error"][-1], rel=1e-6)
    assert two.trainer_state(STEPS)["world_size"] == 2


def test_when_fsdp_run_resumed_after_a_crash_expect_where_the_uninterrupted_run_ended(two_processes, tmp_path):
    # A crash after the checkpoint of step 2 leaves this folder (moved elsewhere, which is allowed);
    # resuming restores the sharded optimiser state on both processes.
    run, config = two_processes("fsdp")
    crashed = RunFolder(tmp_path / "crashed")
    shutil.copytree(run.path, crashed.path)
    shutil.rmtree(crashed.checkpoint(STEPS))
    torchrun({**config, "output": {**config["output"], "dir": str(crashed.path)}}, tmp_path, "--resume")
    a, b = weights(run, STEPS), weights(crashed, STEPS)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_metrics(crashed.metrics)["loss"] == read_metrics(run.metrics)["loss"]
