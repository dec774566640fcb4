"""Runtimes: ONNX Runtime and compiled torch give torch eager's actions; exports serve only their checkpoint,
at their precision, from the files they were written with."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from dit4dit_policy.model import ChunkNoise
from dit4dit_policy.runtime import checkpoint_sha256, export, export_dir, open_runtime, read_manifest
from dit4dit_policy.runtime.artifacts import file_sha256
from dit4dit_policy.runtime.bench import random_checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PARITY = 1e-3  # max |difference| of actions in robot units
# fp16 keeps 11 significant bits: one unit in the last place is 4.9e-4 for actions in [0.5, 1).
# ONNX Runtime and torch run the same fp16 graph with other kernels (summation order, fused ops),
# so their actions differ by a few such units; against fp32, by fp16's rounding through the graphs
# (measured on tiny: 4.9e-4 and 8.7e-4).
PARITY_FP16 = 2e-3
PARITY_FP16_VS_FP32 = 4e-3


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


def test_when_exported_expect_manifest_names_graphs_shapes_versions_and_hashes(exported):
    folder = export_dir(exported, "onnx", "fp32")
    manifest = read_manifest(folder)
    assert manifest.checkpoint_sha256 == checkpoint_sha256(exported)
    assert manifest.config_sha256 == file_sha256(exported / "config.yaml")
    for name, graph in manifest.graphs.items():
        # The graph and the external-data file its weights are in, each with its own hash.
        assert sorted(graph.sha256) == [f"{name}.onnx", f"{name}.onnx.data"]
        assert all(digest == file_sha256(folder / file) for file, digest in graph.sha256.items())
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


def copied(checkpoint, tmp_path):
    """A copy of the checkpoint and its exports, to damage."""
    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    return copy


def test_when_manifest_is_damaged_expect_error_naming_the_file(exported, tmp_path):
    copy = copied(exported, tmp_path)
    path = export_dir(copy, "onnx", "fp32") / "manifest.json"
    data = json.loads(path.read_text())
    del data["graphs"]["denoiser"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="lists graphs"):
        open_runtime("onnx", copy)


def test_when_manifest_predates_file_hashes_expect_refusal_saying_re_export(exported, tmp_path):
    copy = copied(exported, tmp_path)
    path = export_dir(copy, "onnx", "fp32") / "manifest.json"
    data = json.loads(path.read_text())
    del data["schema"], data["config_sha256"]
    for graph in data["graphs"].values():
        del graph["sha256"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"manifest schema 1, this dit4dit reads schema 2 .*re-export"):
        open_runtime("onnx", copy)


@pytest.mark.parametrize("file", ["denoiser.onnx", "trunk.onnx.data"])
def test_when_a_graph_file_is_altered_expect_refusal_naming_it(exported, tmp_path, file):
    copy = copied(exported, tmp_path)
    path = export_dir(copy, "onnx", "fp32") / file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, as a failing disk or copy leaves, which loading may not notice
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"{file} has sha256 .* replaced or damaged after export; re-export"):
        open_runtime("onnx", copy)


def test_when_a_graph_is_replaced_by_another_expect_refusal_naming_it(exported, tmp_path):
    folder = export_dir(copied(exported, tmp_path), "onnx", "fp32")
    shutil.copy(folder / "trunk.onnx", folder / "denoiser.onnx")
    with pytest.raises(ValueError, match="denoiser.onnx has sha256"):
        open_runtime("onnx", folder.parent.parent)


def test_when_external_data_is_missing_expect_error_naming_it(exported, tmp_path):
    copy = copied(exported, tmp_path)
    (export_dir(copy, "onnx", "fp32") / "denoiser.onnx.data").unlink()
    with pytest.raises(FileNotFoundError, match="lacks denoiser.onnx.data"):
        open_runtime("onnx", copy)


def test_when_checkpoint_config_changed_after_export_expect_refusal_naming_it(exported, tmp_path):
    copy = copied(exported, tmp_path)
    with (copy / "config.yaml").open("a") as f:
        f.write("# edited after the export\n")
    with pytest.raises(ValueError, match=r"made from config.yaml with sha256 .*re-export"):
        open_runtime("onnx", copy)


def test_when_export_of_other_precision_is_in_the_asked_folder_expect_refusal_naming_both(exported, tmp_path):
    copy = copied(exported, tmp_path)
    export_dir(copy, "onnx", "fp32").rename(export_dir(copy, "onnx", "fp16"))
    with pytest.raises(ValueError, match="holds a onnx fp32 export, but onnx fp16 was asked for"):
        open_runtime("onnx", copy, precision="fp16")


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


@pytest.mark.slow
def test_when_onnx_runtime_serves_an_fp16_export_on_cpu_expect_torch_actions_within_fp16_rounding(exported, tmp_path):
    checkpoint = copied(exported, tmp_path)
    export(checkpoint, "onnx", "fp16")
    manifest = read_manifest(export_dir(checkpoint, "onnx", "fp16"))
    assert manifest.precision == "fp16"
    dtypes = {t.name: t.dtype for g in manifest.graphs.values() for t in (*g.inputs, *g.outputs)}
    assert dtypes.pop("tau") == "float32" and set(dtypes.values()) == {"float16"}
    fp32, fp16 = open_runtime("torch", checkpoint), open_runtime("torch", checkpoint, precision="fp16")
    onnx = open_runtime("onnx", checkpoint, precision="fp16")
    assert onnx.dtype == torch.float16
    for frame, q, noise in queries(fp32.cfg, 3):
        want32, want16 = fp32.infer(frame, q, "pick up the cup", noise), fp16.infer(frame, q, "pick up the cup", noise)
        got = onnx.infer(frame, q, "pick up the cup", noise)
        # Most actions are inside the clipped range, so the comparison is not of clipped bounds.
        assert (np.abs(want32) < 0.99).mean() > 0.5
        assert np.abs(got - want16).max() < PARITY_FP16
        assert np.abs(got - want32).max() < PARITY_FP16_VS_FP32
    other = fp32.infer(frame, q, "pick up the cup", ChunkNoise.draw(fp32.cfg, generator=torch.Generator()))
    assert np.abs(other - want32).max() > PARITY_FP16_VS_FP32
