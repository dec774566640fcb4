"""Runtimes: ONNX Runtime and compiled torch give torch eager's actions; exports serve only their checkpoint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from dit4dit_policy.model import ChunkNoise
from dit4dit_policy.runtime import checkpoint_sha256, export, export_dir, open_runtime, read_manifest
from dit4dit_policy.runtime.bench import random_checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PARITY = 1e-3  # max |difference| of actions in robot units


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny random-weight checkpoint with its ONNX export (one export for the module: ~8 s)."""
    torch.set_num_threads(1)
    checkpoint = random_checkpoint("tiny", tmp_path_factory.mktemp("runtime") / "checkpoint")
    export(checkpoint, "onnx")
    return checkpoint


def queries(cfg, n: int):
    g = torch.Generator().manual_seed(7)
    s = cfg.observation.image_size
    rng = np.random.default_rng(7)
    return [
        (
            torch.rand(3, s, s, generator=g) * 2 - 1,
            rng.uniform(-1, 1, cfg.state.joints),
            ChunkNoise.draw(cfg, generator=g),
        )
        for _ in range(n)
    ]


def test_when_onnx_runtime_serves_tiny_expect_torch_eager_actions(exported):
    eager, onnx = open_runtime("torch", exported), open_runtime("onnx", exported)
    for frame, q, noise in queries(eager.cfg, 3):
        want = eager.infer(frame, q, "pick up the cup", noise)
        got = onnx.infer(frame, q, "pick up the cup", noise)
        assert got.shape == (eager.cfg.action.horizon, eager.cfg.action.real_dim)
        assert np.abs(got - want).max() < PARITY
    # The comparison can fail: other noise gives other actions.
    other = eager.infer(frame, q, "pick up the cup", ChunkNoise.draw(eager.cfg, generator=torch.Generator()))
    assert np.abs(other - want).max() > PARITY


def test_when_timed_expect_every_stage_and_a_total_covering_them(exported):
    runtime = open_runtime("onnx", exported)
    frame, q, noise = queries(runtime.cfg, 1)[0]
    actions, seconds, stages = runtime.infer_timed(frame, q, "wave", noise)
    steps = [f"action_step_{i}" for i in range(runtime.cfg.sampling.steps)]
    assert list(stages) == ["text", "vae", "video_dit", "action_kv", *steps]
    assert 0 < sum(stages.values()) <= seconds
    assert not runtime.inference.times.enabled  # timing is switched off again afterwards


def test_when_exported_expect_manifest_names_graphs_shapes_versions_and_hash(exported):
    manifest = read_manifest(export_dir(exported, "onnx", "fp32"))
    assert manifest.checkpoint_sha256 == checkpoint_sha256(exported)
    assert (manifest.format, manifest.precision, manifest.preset, manifest.batch_size) == ("onnx", "fp32", "tiny", 1)
    trunk, denoiser = manifest.graphs["trunk"], manifest.graphs["denoiser"]
    assert [t.name for t in trunk.inputs] == ["cond_latent", "future", "context"]
    assert [t.name for t in denoiser.inputs] == ["actions", "tau", "state_token", "keys", "values"]
    assert denoiser.outputs[0].shape == (1, 8, 8) and denoiser.outputs[0].dtype == "float32"
    assert manifest.versions["onnx"] and manifest.versions["onnxruntime"] and manifest.versions["torch"]


def test_when_export_exists_expect_refusal_without_force(exported):
    manifest = export_dir(exported, "onnx", "fp32") / "manifest.json"
    before = manifest.read_text()
    with pytest.raises(FileExistsError, match="already exists; pass --force"):
        export(exported, "onnx")
    assert manifest.read_text() == before


def test_when_export_belongs_to_other_weights_expect_refusal_naming_both_hashes(exported, tmp_path):
    other = random_checkpoint("tiny", tmp_path / "other", seed=1)
    shutil.copytree(exported / "export", other / "export")
    with pytest.raises(ValueError) as error:
        open_runtime("onnx", other)
    assert checkpoint_sha256(exported) in str(error.value) and checkpoint_sha256(other) in str(error.value)


def test_when_manifest_is_damaged_expect_error_naming_the_file(exported, tmp_path):
    copy = tmp_path / "checkpoint"
    shutil.copytree(exported, copy)
    path = export_dir(copy, "onnx", "fp32") / "manifest.json"
    data = json.loads(path.read_text())
    del data["graphs"]["denoiser"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="lists graphs"):
        open_runtime("onnx", copy)


def test_when_no_export_expect_error_saying_how_to_make_one(tmp_path):
    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    with pytest.raises(FileNotFoundError, match="dit4dit export"):
        open_runtime("onnx", checkpoint)


@pytest.mark.parametrize(
    ("fmt", "precision", "message"),
    [
        ("tflite", "fp32", "unknown export format 'tflite'"),
        ("onnx", "int8", "unknown precision 'int8'"),
        ("onnx", "bf16", "bf16 is for --format tensorrt only"),
    ],
)
def test_when_format_or_precision_is_bad_expect_error_naming_it(exported, fmt, precision, message):
    with pytest.raises(ValueError, match=message):
        export(exported, fmt, precision)


def test_when_backend_is_unknown_expect_error_naming_it(exported):
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        open_runtime("jax", exported)


@pytest.mark.slow
def test_when_compiled_on_cpu_expect_torch_eager_actions(exported):
    eager, compiled = open_runtime("torch", exported), open_runtime("torch-compiled", exported)
    for frame, q, noise in queries(eager.cfg, 2):
        want = eager.infer(frame, q, "pick up the cup", noise)
        assert np.abs(compiled.infer(frame, q, "pick up the cup", noise) - want).max() < PARITY
