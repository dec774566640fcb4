"""Reference and fast inference paths: same outputs, less work, and refusals that name the problem."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dit4dit_policy.model import ChunkNoise, FastInference, ReferenceInference, build_model, load_preset
from dit4dit_policy.model.text import HashTextEncoder
from dit4dit_policy.preprocessing import NormStats, state_features

INSTRUCTION = "put the red cup on the plate"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def setup():
    cfg = load_preset("tiny")
    torch.manual_seed(0)
    model = build_model(cfg)
    stats = NormStats(
        action_min=-np.linspace(1, 2, cfg.action.real_dim), action_max=np.linspace(1, 3, cfg.action.real_dim)
    )
    encoder = HashTextEncoder(cfg.text.out_dim, cfg.text.max_tokens)
    return cfg, model, stats, encoder


def observation(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = cfg.observation.image_size
    frame = torch.rand(3, s, s, generator=g) * 2 - 1
    joints = (torch.rand(cfg.state.joints, generator=g).numpy() - 0.5) * 3
    return frame, joints


def test_when_same_noise_expect_fast_path_equals_reference_within_1e_4(setup):
    cfg, model, stats, encoder = setup
    ref, fast = ReferenceInference(model, stats, encoder), FastInference(model, stats, encoder)
    for seed in range(3):
        frame, joints = observation(cfg, seed)
        noise = ChunkNoise.draw(cfg, 1, generator=torch.Generator().manual_seed(seed))
        state = torch.from_numpy(state_features(joints, cfg.state.dim))[None]
        a_ref = ref.sample(frame[None], state, INSTRUCTION, noise)
        a_fast = fast.sample(frame[None], state, INSTRUCTION, noise)
        assert a_ref.shape == a_fast.shape == (1, cfg.action.horizon, cfg.action.dim)
        torch.testing.assert_close(a_fast, a_ref, rtol=0, atol=1e-4)
        out_ref = ref.infer(frame, joints, INSTRUCTION, noise=noise)
        out_fast = fast.infer(frame, joints, INSTRUCTION, noise=noise)
        assert out_fast.shape == (cfg.action.horizon, cfg.action.real_dim) and out_fast.dtype == np.float32
        np.testing.assert_allclose(out_fast, out_ref, rtol=0, atol=1e-4 * 2)  # span/2 <= 2 here


def test_when_inputs_differ_expect_actions_differ(setup):
    # Guards the equality test above: it must not pass because the outputs ignore their inputs.
    cfg, model, stats, encoder = setup
    fast = FastInference(model, stats, encoder)
    noise = ChunkNoise.draw(cfg, 1, generator=torch.Generator().manual_seed(0))
    frame, joints = observation(cfg, 0)
    base = fast.infer(frame, joints, INSTRUCTION, noise=noise)
    other_frame, other_joints = observation(cfg, 1)
    for changed in (
        fast.infer(other_frame, joints, INSTRUCTION, noise=noise),
        fast.infer(frame, other_joints, INSTRUCTION, noise=noise),
        fast.infer(frame, joints, "open the drawer", noise=noise),
    ):
        assert np.abs(changed - base).max() > 1e-3


def test_when_no_noise_given_expect_fresh_draw_per_call_and_seeded_generator_reproducible(setup):
    cfg, model, stats, encoder = setup
    fast = FastInference(model, stats, encoder)
    frame, joints = observation(cfg)
    a, b = fast.infer(frame, joints, INSTRUCTION), fast.infer(frame, joints, INSTRUCTION)
    assert not np.array_equal(a, b)
    c = fast.infer(frame, joints, INSTRUCTION, generator=torch.Generator().manual_seed(5))
    d = fast.infer(frame, joints, INSTRUCTION, generator=torch.Generator().manual_seed(5))
    assert np.array_equal(c, d)


def test_when_fast_path_runs_expect_one_vae_frame_and_text_encoded_once_per_instruction(setup):
    cfg, model, stats, _ = setup
    texts, clip_encodes, resampled_frames = [], [], []

    class CountingEncoder(HashTextEncoder):
        def encode(self, batch):
            texts.extend(batch)
            return super().encode(batch)

    vae = model.video.vae
    first_resample = next(m for m in vae.encoder.down_blocks if type(m).__name__ == "WanResample")
    handles = [
        vae.encoder.register_forward_pre_hook(lambda _m, args: clip_encodes.append(args[0].shape[2])),
        first_resample.register_forward_pre_hook(lambda _m, args: resampled_frames.append(args[0].shape[2])),
    ]
    try:
        fast = FastInference(model, stats, CountingEncoder(cfg.text.out_dim, cfg.text.max_tokens))
        frame, joints = observation(cfg)
        for instruction in (INSTRUCTION, INSTRUCTION, "open the drawer", "open the drawer"):
            fast.infer(frame, joints, instruction)
        assert texts == [INSTRUCTION, "open the drawer"]
        assert clip_encodes == [] and resampled_frames == [1, 1, 1, 1]
        ReferenceInference(model, stats, HashTextEncoder(cfg.text.out_dim, cfg.text.max_tokens)).infer(
            frame, joints, INSTRUCTION
        )
        assert resampled_frames[4:] == [1, 4]  # the whole clip, in the encoder's causal chunks
    finally:
        for h in handles:
            h.remove()


def test_when_fast_path_runs_expect_no_block_after_extraction_is_touched(setup):
    cfg, model, stats, encoder = setup
    touched = set()
    handles = [
        module.register_forward_pre_hook(lambda _m, _a, i=i: touched.add(i))
        for i, block in enumerate(model.video.transformer.transformer_blocks)
        for module in block.children()
    ]
    frame, joints = observation(cfg)
    try:
        FastInference(model, stats, encoder).infer(frame, joints, INSTRUCTION)
        fast_touched = set(touched)
        touched.clear()
        ReferenceInference(model, stats, encoder).infer(frame, joints, INSTRUCTION)
    finally:
        for h in handles:
            h.remove()
    assert fast_touched == set(range(cfg.video.extract_block + 1))
    assert touched == set(range(cfg.video.num_layers))


@pytest.mark.parametrize(
    ("frame_shape", "message"),
    [
        ((3, 32, 32), "frame size 32x32 does not match preset 'tiny': expected 64x64"),
        ((4, 64, 64), r"frame must be \[3, 64, 64\] \(3 RGB channels first\), got shape \[4, 64, 64\]"),
        ((64, 64, 3), r"got shape \[64, 64, 3\]"),
    ],
)
def test_when_frame_is_malformed_expect_error_naming_it(setup, frame_shape, message):
    cfg, model, stats, encoder = setup
    _, joints = observation(cfg)
    with pytest.raises(ValueError, match=message):
        FastInference(model, stats, encoder).infer(torch.zeros(frame_shape), joints, INSTRUCTION)


def test_when_frame_has_nan_expect_error(setup):
    cfg, model, stats, encoder = setup
    frame, joints = observation(cfg)
    frame[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="frame contains NaN"):
        ReferenceInference(model, stats, encoder).infer(frame, joints, INSTRUCTION)


def test_when_state_has_nan_expect_error_naming_the_joint(setup):
    cfg, model, stats, encoder = setup
    frame, joints = observation(cfg)
    joints[4] = np.nan
    with pytest.raises(ValueError, match=r"joint_positions contain NaN or inf at index\(es\) \[4\]"):
        FastInference(model, stats, encoder).infer(frame, joints, INSTRUCTION)


def test_when_state_has_wrong_length_expect_error_naming_expected_length(setup):
    cfg, model, stats, encoder = setup
    frame, joints = observation(cfg)
    with pytest.raises(ValueError, match=r"vector of 7 joint angles for preset 'tiny', got shape \[6\]"):
        FastInference(model, stats, encoder).infer(frame, joints[:6], INSTRUCTION)


def test_when_text_encoder_or_stats_do_not_fit_expect_refusal(setup):
    cfg, model, stats, _ = setup
    with pytest.raises(ValueError, match=r"preset 'tiny' needs \[8, 48\]"):
        FastInference(model, stats, HashTextEncoder(32, 8))
    with pytest.raises(ValueError, match="cover 3 action dims; preset 'tiny' has 7"):
        FastInference(model, NormStats(np.zeros(3), np.ones(3)), HashTextEncoder(48, 8))


def test_when_actions_unnormalised_expect_them_within_the_training_range(setup):
    cfg, model, stats, encoder = setup
    frame, joints = observation(cfg)
    out = FastInference(model, stats, encoder).infer(frame, joints, INSTRUCTION)
    assert np.all(out >= stats.action_min - 1e-6) and np.all(out <= stats.action_max + 1e-6)


def test_when_frame_values_outside_minus_one_to_one_expect_refusal_naming_the_preprocessing(setup):
    cfg, model, stats, encoder = setup
    frame, joints = observation(cfg)
    fast = FastInference(model, stats, encoder)
    for bad in ((frame + 1) * 127.5, frame * 1.01 / frame.abs().max()):
        with pytest.raises(ValueError, match=r"must be RGB in \[-1, 1\], as preprocessing.image_to_model"):
            fast.infer(bad, joints, INSTRUCTION)
    fast.infer((frame / frame.abs().max()) * (1 + 5e-4), joints, INSTRUCTION)  # float rounding passes


@pytest.fixture(scope="module")
def dropout_model():
    cfg = load_preset("tiny")
    cfg = dataclasses.replace(cfg, action_dit=dataclasses.replace(cfg.action_dit, dropout=0.5))
    torch.manual_seed(0)
    return build_model(cfg)


def test_when_model_put_back_in_train_mode_expect_refusal_and_eval_mode_deterministic(setup, dropout_model):
    cfg, _, stats, encoder = setup
    model = dropout_model
    paths = (ReferenceInference(model, stats, encoder), FastInference(model, stats, encoder))
    frame, joints = observation(cfg)
    state = torch.from_numpy(state_features(joints, cfg.state.dim))[None]
    noise = ChunkNoise.draw(cfg, 1, generator=torch.Generator().manual_seed(0))
    model.train()
    try:
        for path in paths:
            with torch.no_grad():  # what the refusal prevents: dropout makes the same query differ
                assert not torch.equal(
                    path._sample(frame[None], state, INSTRUCTION, noise),
                    path._sample(frame[None], state, INSTRUCTION, noise),
                )
            with pytest.raises(RuntimeError, match=r"model is in training mode.*call model.eval\(\)"):
                path.infer(frame, joints, INSTRUCTION, noise=noise)
            with pytest.raises(RuntimeError, match="model is in training mode"):
                path.sample(frame[None], state, INSTRUCTION, noise)
    finally:
        model.eval()
    for path in paths:
        first = path.infer(frame, joints, INSTRUCTION, noise=noise)
        assert np.array_equal(path.infer(frame, joints, INSTRUCTION, noise=noise), first)


def test_when_weights_change_and_invalidate_called_expect_same_actions_as_a_fresh_fast_path(setup):
    cfg, _, stats, encoder = setup
    torch.manual_seed(2)
    model = build_model(cfg)
    fast = FastInference(model, stats, encoder)
    frame, joints = observation(cfg)
    noise = ChunkNoise.draw(cfg, 1, generator=torch.Generator().manual_seed(0))
    before = fast.infer(frame, joints, INSTRUCTION, noise=noise)  # caches the text context
    with torch.no_grad():
        for p in model.video.transformer.crossattn_proj.parameters():
            p.mul_(1.5)
    fast.invalidate()
    after = fast.infer(frame, joints, INSTRUCTION, noise=noise)
    assert np.array_equal(after, FastInference(model, stats, encoder).infer(frame, joints, INSTRUCTION, noise=noise))
    assert np.abs(after - before).max() > 1e-3  # the change matters, so a stale context would show


def test_when_noise_is_float64_expect_both_paths_cast_it_to_the_model_dtype(setup):
    cfg, model, stats, encoder = setup
    frame, joints = observation(cfg)
    state = torch.from_numpy(state_features(joints, cfg.state.dim))[None]
    noise = ChunkNoise.draw(cfg, 1, generator=torch.Generator().manual_seed(0))
    wide = ChunkNoise(video=noise.video.double(), action=noise.action.double())
    for path in (ReferenceInference(model, stats, encoder), FastInference(model, stats, encoder)):
        out = path.sample(frame[None], state, INSTRUCTION, wide)
        assert out.dtype == torch.float32
        assert torch.equal(out, path.sample(frame[None], state, INSTRUCTION, noise))
