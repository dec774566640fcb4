"""TensorRT: what can be checked without it here, and parity with torch where it and CUDA exist."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from dit4dit_policy.model import ChunkNoise
from dit4dit_policy.runtime import export, export_dir, open_runtime
from dit4dit_policy.runtime.artifacts import GraphSpec
from dit4dit_policy.runtime.bench import random_checkpoint
from dit4dit_policy.runtime.tensorrt_backend import TrtGraph

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAVE_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(HAVE_TENSORRT, reason="tensorrt is installed, so its absence cannot be tested")
def test_when_tensorrt_is_absent_expect_export_to_say_what_to_install(tmp_path):
    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    with pytest.raises(RuntimeError, match="TensorRT is not installed: `pip install tensorrt`"):
        export(checkpoint, "tensorrt", "fp16")
    assert not (checkpoint / "export").exists()  # refused before any work


def test_when_engine_device_is_cpu_expect_error_naming_it():
    with pytest.raises(ValueError, match="CUDA device, got device cpu"):
        TrtGraph(Path("."), GraphSpec("trunk.engine", (), ()), torch.device("cpu"))


def test_when_tensorrt_export_missing_expect_error_naming_the_folder(tmp_path):
    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    with pytest.raises(FileNotFoundError, match="tensorrt-bf16"):
        open_runtime("tensorrt", checkpoint, device="cpu", precision="bf16")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_TENSORRT and HAVE_CUDA), reason="needs tensorrt and a CUDA GPU")
def test_when_tensorrt_serves_tiny_expect_torch_eager_actions(tmp_path):
    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    assert export(checkpoint, "tensorrt", "fp32") == export_dir(checkpoint, "tensorrt", "fp32")
    eager = open_runtime("torch", checkpoint, device="cuda")
    engine = open_runtime("tensorrt", checkpoint, device="cuda", precision="fp32")
    g = torch.Generator().manual_seed(0)
    s = eager.cfg.observation.image_size
    frame, q = torch.rand(3, s, s, generator=g) * 2 - 1, np.zeros(eager.cfg.state.joints)
    noise = ChunkNoise.draw(eager.cfg, generator=g)
    noise = ChunkNoise(video=noise.video.cuda(), action=noise.action.cuda())
    want = eager.infer(frame.cuda(), q, "pick up the cup", noise)
    assert np.abs(engine.infer(frame.cuda(), q, "pick up the cup", noise) - want).max() < 1e-3
