"""A generated LeRobot dataset (and a small run's config) for the training tests, written with the project's own dataset
writer and read back by `open_training_dataset`, as a recorded one would be.

Each episode shows one coloured square on a grey background at a random place, the same in every
frame; its colour names the arm's target pose: home + one of two offsets, either way (four targets
whose mean is home). The measured state stays near home (noise per row); every row commands the
target. The instruction says nothing about the target, so a policy that ignores the image can do
no better than about the home pose, which is as far from the target as holding the state is:
beating that clearly takes reading the colour from the frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dit4dit_policy.data.lerobot import DatasetWriter, video_key
from dit4dit_policy.model.config import ModelConfig

PALETTE = np.array([[230, 25, 25], [25, 230, 25], [25, 25, 230], [230, 230, 25]], dtype=np.uint8)
REACH = 0.5  # rad: size of each joint's offset from home at the target
STATE_NOISE = 0.05  # rad: spread of the measured state around home
INSTRUCTIONS = ("reach the target", "move the arm to the goal")


def write_dataset(root: Path, cfg: ModelConfig, *, episodes: int, rows: int, seed: int = 0) -> Path:
    """`episodes` episodes of `rows` rows at the preset's image size into the empty folder `root`."""
    joints, size = cfg.state.joints, cfg.observation.image_size
    names = [f"joint_{i}" for i in range(joints)]
    root.mkdir(parents=True)
    writer = DatasetWriter(root, 10.0, names, names, video_key("/camera"), "synthetic")
    home = np.linspace(-0.3, 0.3, joints)
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(2, joints))
    offsets = REACH * np.concatenate([signs, -signs])  # colour c -> target home + offsets[c]
    side = size * 3 // 4
    for e in range(episodes):
        rng = np.random.default_rng([seed, e])
        colour = int(rng.integers(len(PALETTE)))
        y, x = rng.integers(0, size - side + 1, size=2)
        frame = np.full((size, size, 3), 128, dtype=np.uint8)
        frame[y : y + side, x : x + side] = PALETTE[colour]
        state = home + rng.normal(0.0, STATE_NOISE, size=(rows, joints))
        action = np.repeat((home + offsets[colour])[None], rows, axis=0)
        writer.add_episode(state, action, [INSTRUCTIONS[e % 2]] * rows, (frame for _ in range(rows)), {})
    writer.finish({"source": "tests/training_synthetic.py"})
    return root


def config_dict(tmp_path, **changes) -> dict:
    """A small tiny-preset run on a generated dataset; `changes` as {"section.key": value}."""
    d = {
        "data": {"root": str(tmp_path / "data"), "num_workers": 0},
        "model": {"preset": "tiny", "cosmos_path": None, "init_from": None, "latent_stats_samples": 8, "text": {}},
        "train": {
            "steps": 6,
            "batch_size": 4,
            "seed": 3,
            "device": "cpu",
            "precision": "fp32",
            "parallel": "ddp",
            "gradient_checkpointing": False,
        },
        "optimizer": {
            "lr_video": 1e-3,
            "lr_action": 2e-3,
            "lr_min": 1e-5,
            "warmup_steps": 2,
            "betas": [0.9, 0.95],
            "eps": 1e-8,
            "weight_decay": 1e-8,
            "grad_clip": 1.0,
        },
        "output": {"dir": str(tmp_path / "run"), "log_every": 1, "checkpoint_every": 3, "keep_checkpoints": 2},
        "validation": {"episodes": 2, "every": 0, "samples": 8},
    }
    for key, value in changes.items():
        section, name = key.split(".")
        d[section][name] = value
    return d
