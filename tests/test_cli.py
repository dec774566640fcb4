"""`dit4dit export` and `dit4dit bench` end to end on the tiny preset."""

from __future__ import annotations

import json

import pytest

from dit4dit_policy.cli import main
from dit4dit_policy.runtime import export_dir, read_manifest
from dit4dit_policy.runtime.bench import random_checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_when_export_run_twice_expect_artefacts_then_refusal_then_force(tmp_path, capsys):
    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    folder = export_dir(checkpoint, "onnx", "fp32")
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx"]) == 0
    assert {p.name for p in folder.glob("*.onnx")} == {"trunk.onnx", "denoiser.onnx"}
    assert read_manifest(folder).preset == "tiny"
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    (folder / "stale").touch()
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--force"]) == 0
    assert not (folder / "stale").exists() and (folder / "trunk.onnx").is_file()


def test_when_bench_finds_an_export_altered_since_expect_exit_2_naming_the_file(tmp_path, capsys):
    checkpoint = random_checkpoint("tiny", tmp_path / "checkpoint")
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx"]) == 0
    weights = export_dir(checkpoint, "onnx", "fp32") / "denoiser.onnx.data"
    weights.write_bytes(weights.read_bytes()[:-4])  # cut short, as by an interrupted copy
    capsys.readouterr()
    args = ["bench", "--checkpoint", str(checkpoint), "--backend", "onnx", "--runs", "1", "--warmup", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{weights} has sha256" in err and "re-export with `dit4dit export" in err


def test_when_bench_without_checkpoint_expect_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--preset", "tiny", "--backend", "torch,onnx", "--runs", "3", "--warmup", "1", "--json", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["preset"] == "tiny" and list(result["backends"]) == ["torch", "onnx"]
    for figures in result["backends"].values():
        assert 0 < figures["total_ms"]["p50"] <= figures["total_ms"]["p99"]
        assert figures["control_period_error_ms"]["p99"] >= 0
        assert set(figures["stage_ms_p50"]) >= {"vae", "video_dit", "action_kv", "action_step_0"}
    assert result["backends"]["onnx"]["max_abs_diff"] < 1e-3
    assert "total p50" in capsys.readouterr().out


def test_when_bench_backend_unknown_expect_error_naming_it(capsys):
    assert main(["bench", "--preset", "tiny", "--backend", "torch,jax"]) == 2
    assert "unknown backend(s) ['jax']" in capsys.readouterr().err
