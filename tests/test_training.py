"""Training in one process: config, schedule, data order, run folder, resume, plots, and that the
tiny model learns to read the image. Runs read a generated LeRobot dataset (`training_synthetic`)
through the project's reader, as `dit4dit train` does."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from safetensors.torch import load_file
from training_synthetic import config_dict, write_dataset

from dit4dit_policy.cli import main as dit4dit
from dit4dit_policy.data.dataset import open_training_dataset
from dit4dit_policy.model import build_model, load_checkpoint, load_preset
from dit4dit_policy.model.text import build_text_encoder
from dit4dit_policy.training import trainer as trainer_module
from dit4dit_policy.training.config import TrainConfig, load_train_config
from dit4dit_policy.training.data import DeviceText, StepBatches, sample_seeds
from dit4dit_policy.training.optim import learning_rate
from dit4dit_policy.training.plot import plot_run
from dit4dit_policy.training.run_folder import METRICS_COLUMNS, RunFolder, read_metrics
from dit4dit_policy.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def make_config(tmp_path, episodes=8, rows=4, **changes) -> TrainConfig:
    if not (tmp_path / "data").exists():
        write_dataset(tmp_path / "data", load_preset("tiny"), episodes=episodes, rows=rows)
    return TrainConfig.from_dict(config_dict(tmp_path, **changes), source="test")


# -- config -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["train_tiny.yaml", "train_g1.yaml"])
def test_when_shipped_configs_loaded_expect_valid_and_naming_a_known_preset(name):
    cfg = load_train_config(name)
    load_preset(cfg.model.preset)


def test_when_g1_config_loaded_expect_the_reference_recipe():
    cfg = load_train_config("train_g1.yaml")
    o = cfg.optimizer
    assert (o.lr_video, o.lr_action, o.lr_min, o.warmup_steps, o.betas, o.grad_clip) == (
        1e-5, 1e-4, 5e-7, 5000, (0.9, 0.95), 1.0
    )
    t = cfg.train
    assert (t.parallel, t.precision, t.gradient_checkpointing, t.batch_size) == ("fsdp", "bf16", True, 256)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.steps", 0, r"train: train.steps must be an int >= 1, got 0"),
        ("train.precision", "fp16", r"train.precision 'fp16' is unknown; use one of fp32, bf16"),
        ("optimizer.betas", [0.9], r"optimizer.betas must be two numbers"),
        ("optimizer.lr_min", 1.0, r"optimizer.lr_min 1.0 exceeds a peak learning rate"),
        ("validation.every", 5, None),
        ("model.init_from", "", r"model.init_from must be a folder path or null"),
        ("model.init_from", "ckpt", r"init_from takes every weight .* latent_stats_samples 0"),
    ],
)
def test_when_config_value_bad_expect_error_naming_it(tmp_path, key, value, message):
    d = config_dict(tmp_path, **{key: value})
    if message is None:  # every > 0 with nothing held out
        d["validation"]["episodes"] = 0
        message = "validation.every is set but validation.episodes holds none out"
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(d, source="test")


def test_when_config_has_unknown_or_missing_keys_expect_error_naming_them(tmp_path):
    d = config_dict(tmp_path)
    d["train"]["learning_rate"] = 1.0
    del d["train"]["seed"]
    with pytest.raises(ValueError, match=r"test: train: fields missing \['seed'\], unknown \['learning_rate'\]"):
        TrainConfig.from_dict(d, source="test")
    d = config_dict(tmp_path)
    d["extras"] = {}
    with pytest.raises(ValueError, match=r"sections missing \[\], unknown \['extras'\]"):
        TrainConfig.from_dict(d, source="test")


# -- schedule and data order -------------------------------------------------------------------------
def test_when_schedule_evaluated_expect_linear_warmup_then_cosine_down_to_lr_min(tmp_path):
    o = make_config(tmp_path, **{"optimizer.warmup_steps": 10}).optimizer
    rates = [learning_rate(s, 1e-3, o, total_steps=111) for s in range(111)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(b > a for a, b in zip(rates[:10], rates[1:10], strict=False))
    assert all(b < a for a, b in zip(rates[10:], rates[11:], strict=False))
    assert rates[-1] == pytest.approx(o.lr_min)
    # halfway through the 100 decay steps: half way between peak and floor
    assert rates[10 + 50] == pytest.approx((1e-3 + o.lr_min) / 2, rel=1e-3)


def test_when_batches_split_over_processes_expect_the_same_global_batches():
    whole = StepBatches(30, 6, seed=1, rank=0, world=1, start=0, steps=12)
    halves = [StepBatches(30, 6, seed=1, rank=r, world=2, start=0, steps=12) for r in range(2)]
    one = list(whole)
    two = [a + b for a, b in zip(*halves, strict=True)]
    assert one == two
    # each epoch (5 steps of 6 from 30 samples) visits every sample once, in a new order
    assert sorted(sum(one[:5], [])) == list(range(30)) and sorted(sum(one[5:10], [])) == list(range(30))
    assert one[:5] != one[5:10]
    assert list(StepBatches(30, 6, seed=1, rank=0, world=1, start=7, steps=12)) == one[7:]
    assert one != list(StepBatches(30, 6, seed=2, rank=0, world=1, start=0, steps=12))
    with pytest.raises(ValueError, match="cannot be split evenly over 4 processes"):
        StepBatches(30, 6, seed=1, rank=0, world=4, start=0, steps=12)


def test_when_sample_seeds_drawn_expect_them_distinct_per_step_and_position():
    seeds = [s for step in range(50) for s in sample_seeds(0, step, range(16))]
    assert len(set(seeds)) == len(seeds)
    assert sample_seeds(0, 3, [5]) == sample_seeds(0, 3, range(6))[5:]


def test_when_instructions_embedded_on_device_expect_the_encoders_embeddings():
    cfg = load_preset("tiny")
    encoder = build_text_encoder(cfg.text.encoder_config(cache_entries=2))
    text = DeviceText(encoder, torch.device("cpu"))
    batch = ["a", "b", "a", "c", "b"]
    torch.testing.assert_close(text(batch), encoder.encode(batch), rtol=0, atol=0)
    torch.testing.assert_close(text(["c", "d", "e"]), encoder.encode(["c", "d", "e"]), rtol=0, atol=0)


# -- run folder --------------------------------------------------------------------------------------
def test_when_metrics_truncated_for_resume_expect_later_rows_gone(tmp_path):
    folder = RunFolder(tmp_path)
    folder.start_metrics()
    for step in range(1, 7):
        folder.append_metrics({"step": step, "loss": 1.0 / step})
    folder.keep_metrics_until(4)
    columns = read_metrics(folder.metrics)
    assert columns["step"] == [1.0, 2.0, 3.0, 4.0] and columns["loss"][3] == pytest.approx(0.25)
    assert list(columns) == list(METRICS_COLUMNS)


# -- training runs -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_when_run_interrupted_and_resumed_expect_the_same_loss_curve_and_weights(tmp_path, monkeypatch):
    straight = make_config(tmp_path / "a")
    train(straight)

    cfg = make_config(tmp_path / "b")
    original = trainer_module._Run._step

    def interrupted(self, step, raw, sampler):
        if step == 4:  # after the checkpoint of step 3, before that of step 6
            raise KeyboardInterrupt
        return original(self, step, raw, sampler)

    monkeypatch.setattr(trainer_module._Run, "_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert RunFolder(cfg.output.dir).saved_steps() == [3]
    assert read_metrics(RunFolder(cfg.output.dir).metrics)["step"] == [1.0, 2.0, 3.0, 4.0]
    monkeypatch.setattr(trainer_module._Run, "_step", original)
    train(cfg, resume=True)

    a, b = read_metrics(RunFolder(straight.output.dir).metrics), read_metrics(RunFolder(cfg.output.dir).metrics)
    assert b["step"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    for column in ("loss", "loss_action", "loss_video", "grad_norm", "lr_video", "lr_action"):
        assert a[column] == b[column], column
    assert a["loss"][0] != a["loss"][-1]
    weights = [load_file(RunFolder(c.output.dir).checkpoint(6) / "model.safetensors") for c in (straight, cfg)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # keep_checkpoints: 2 -> steps 3 and 6; the newest is a model checkpoint serving can load
    assert RunFolder(cfg.output.dir).saved_steps() == [3, 6]
    model, stats = load_checkpoint(RunFolder(cfg.output.dir).checkpoint(6), preset="tiny")
    assert stats == open_training_dataset(cfg.data.root, model.cfg).norm_stats
    assert model.text_encoder_name == build_text_encoder(model.cfg.text.encoder_config()).name
    # the latent statistics measured at the start travel in the checkpoint
    assert not torch.equal(model.video.latents_std, build_model(model.cfg).video.latents_std)


def test_when_fine_tuning_from_a_checkpoint_expect_its_weights_as_the_start(tmp_path):
    first = make_config(tmp_path / "a", **{"train.steps": 3})
    train(first)
    start = RunFolder(first.output.dir).checkpoint(3)
    slow = {"train.steps": 1, "optimizer.lr_video": 1e-9, "optimizer.lr_action": 1e-9, "optimizer.lr_min": 1e-10}
    tuned = make_config(tmp_path / "b", **slow, **{"model.init_from": str(start), "model.latent_stats_samples": 0})
    fresh = make_config(tmp_path / "c", **slow)
    weights = {}
    for name, cfg in (("tuned", tuned), ("fresh", fresh)):
        train(cfg)
        weights[name] = load_file(RunFolder(cfg.output.dir).checkpoint(1) / "model.safetensors")
    before = load_file(start / "model.safetensors")
    assert before.keys() == weights["tuned"].keys()
    # One step at a vanishing learning rate: the started-from weights, latent statistics included;
    # the same step from a new model ends elsewhere.
    assert all(torch.allclose(before[k], weights["tuned"][k], atol=1e-6) for k in before)
    assert not all(torch.allclose(before[k], weights["fresh"][k], atol=1e-6) for k in before)


@pytest.mark.slow
def test_when_run_folder_or_resume_does_not_fit_expect_clear_error_and_nothing_written(tmp_path):
    cfg = make_config(tmp_path, **{"train.steps": 3})
    with pytest.raises(ValueError, match="no training run"):
        train(cfg, resume=True)
    missing = make_config(tmp_path, **{"data.root": str(tmp_path / "nowhere")})
    with pytest.raises(FileNotFoundError, match="data.root .*nowhere.* does not exist"):
        train(missing)
    assert not (tmp_path / "run").exists()
    train(cfg)
    with pytest.raises(ValueError, match="already holds files; pass --resume"):
        train(cfg)
    changed = make_config(tmp_path, **{"train.steps": 3, "optimizer.lr_action": 5e-3})
    with pytest.raises(ValueError, match=r"differs in optimizer.lr_action: 0.002 -> 0.005"):
        train(changed, resume=True)
    before = (tmp_path / "run" / "metrics.csv").read_text()
    assert train(cfg, resume=True).step == 3  # finished: nothing to do
    assert (tmp_path / "run" / "metrics.csv").read_text() == before


@pytest.mark.slow
def test_when_gradient_checkpointing_on_expect_the_same_training_and_bf16_close(tmp_path):
    def losses(name, **changes):
        cfg = make_config(tmp_path / name, **{"train.steps": 2, **changes})
        train(cfg)
        return read_metrics(RunFolder(cfg.output.dir).metrics)["loss"]

    plain = losses("plain")
    assert losses("checkpointed", **{"train.gradient_checkpointing": True}) == pytest.approx(plain, rel=1e-5)
    bf16 = losses("bf16", **{"train.precision": "bf16"})
    assert all(math.isfinite(v) for v in bf16) and bf16 == pytest.approx(plain, rel=0.05)


@pytest.mark.slow
def test_when_tiny_model_trains_expect_validation_error_well_below_holding_the_state(tmp_path):
    cfg = make_config(
        tmp_path,
        episodes=200,
        **{
            "model.latent_stats_samples": 64,
            "train.steps": 150,
            "train.batch_size": 8,
            "optimizer.lr_video": 2e-3,  # train_tiny.yaml's rates
            "optimizer.lr_action": 2e-3,
            "optimizer.warmup_steps": 10,
            "output.log_every": 50,
            "output.checkpoint_every": 150,
            "validation.episodes": 20,
            "validation.every": 150,
            "validation.samples": 32,
        },
    )
    train(cfg)
    metrics = read_metrics(RunFolder(cfg.output.dir).metrics)
    error, held = metrics["val_action_error"][-1], metrics["val_copy_state_error"][-1]
    assert error < 0.5 * held, f"validation error {error:.4f} rad vs {held:.4f} for holding the state"


# -- command line ------------------------------------------------------------------------------------
def test_when_plot_asked_expect_png_and_no_silent_overwrite(tmp_path, capsys):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.start_metrics()
    for step in range(1, 5):
        row = {"step": step, "loss": 2.0 / step, "loss_action": 1.0 / step, "loss_video": 1.0 / step}
        folder.append_metrics(row | ({"val_action_error": 0.1, "val_copy_state_error": 0.2} if step == 4 else {}))
    out = plot_run(folder.path)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert dit4dit(["plot", str(folder.path)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert dit4dit(["plot", str(folder.path), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").is_file()
    assert dit4dit(["plot", str(tmp_path)]) == 2
    assert "not a training run folder" in capsys.readouterr().err


def test_when_train_config_missing_expect_error_exit(tmp_path, capsys):
    assert dit4dit(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err


def test_when_config_dict_copied_expect_round_trip(tmp_path):
    cfg = make_config(tmp_path)
    assert TrainConfig.from_dict(copy.deepcopy(cfg.to_dict()), source="copy") == cfg
