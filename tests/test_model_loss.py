"""The training objective on the tiny preset: its parts, what each ignores, and that it can be fitted."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dit4dit_policy.model import TrainBatch, build_model, compute_loss, load_preset
from dit4dit_policy.model.text import HashTextEncoder

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def cfg():
    return load_preset("tiny")


def make_batch(cfg, batch=2, seed=0, text=None):
    g = torch.Generator().manual_seed(seed)
    o, h, a = cfg.observation, cfg.action.horizon, cfg.action.dim
    mask = torch.zeros(batch, h, a)
    mask[..., : cfg.action.real_dim] = 1.0
    actions = (torch.rand(batch, h, a, generator=g) * 2 - 1) * mask
    return TrainBatch(
        frames=torch.rand(batch, o.num_frames, 3, o.image_size, o.image_size, generator=g) * 2 - 1,
        state=torch.rand(batch, cfg.state.dim, generator=g) * 2 - 1,
        actions=actions,
        action_mask=mask,
        text=text if text is not None else torch.randn(batch, cfg.text.max_tokens, cfg.text.out_dim, generator=g),
    )


def model_for(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg).train()


def loss(model, batch, seed=7, **kw):
    return compute_loss(model, batch, generator=torch.Generator().manual_seed(seed), **kw)


def test_when_loss_computed_expect_finite_parts_that_sum_to_total(cfg):
    parts = loss(model_for(cfg), make_batch(cfg))
    for value in (parts.total, parts.action, parts.video):
        assert value.ndim == 0 and torch.isfinite(value)
    torch.testing.assert_close(parts.total, parts.action + cfg.training.video_loss_weight * parts.video)
    # Untrained: both are near the variance of noise - x0, about 1 + E[x0^2].
    assert 0.3 < parts.action.item() < 5 and 0.3 < parts.video.item() < 5


def test_when_video_loss_weight_changes_expect_total_to_follow(cfg):
    model, batch = model_for(cfg), make_batch(cfg)
    base = loss(model, batch)
    model.cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, video_loss_weight=3.0))
    heavy = loss(model, batch)
    torch.testing.assert_close(heavy.total, base.action + 3.0 * base.video)


def test_when_prediction_on_conditioning_frame_perturbed_expect_same_video_loss(cfg):
    model, batch = model_for(cfg), make_batch(cfg)
    base = loss(model, batch)

    def perturb(frame):
        def hook(_module, _inputs, output):
            pred = output[0].clone()
            pred[:, :, frame] += 50.0
            return (pred,)

        return model.video.transformer.register_forward_hook(hook)

    handle = perturb(0)
    try:
        assert loss(model, batch).video.item() == base.video.item()
    finally:
        handle.remove()
    handle = perturb(1)
    try:
        assert loss(model, batch).video.item() > base.video.item() + 100
    finally:
        handle.remove()


def test_when_padded_action_dims_change_expect_same_action_loss(cfg):
    model, batch = model_for(cfg), make_batch(cfg)
    base = loss(model, batch)
    junk = batch.actions.clone()
    junk[..., cfg.action.real_dim :] = 7.0
    assert loss(model, dataclasses.replace(batch, actions=junk)).action.item() == base.action.item()
    moved = batch.actions.clone()
    moved[..., 0] += 0.5
    assert loss(model, dataclasses.replace(batch, actions=moved)).action.item() != base.action.item()


def test_when_action_loss_backpropagated_expect_no_gradient_in_video_dit(cfg):
    model = model_for(cfg)
    parts = loss(model, make_batch(cfg))
    parts.action.backward()
    assert all(p.grad is None for p in model.video.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.action.parameters())
    model.zero_grad(set_to_none=True)
    loss(model, make_batch(cfg)).video.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.video.transformer.parameters())
    assert all(p.grad is None for p in model.video.vae.parameters())


def test_when_same_generator_seed_expect_same_loss_and_other_seed_other_loss(cfg):
    model, batch = model_for(cfg).eval(), make_batch(cfg)
    assert loss(model, batch, seed=3).total.item() == loss(model, batch, seed=3).total.item()
    assert loss(model, batch, seed=3).total.item() != loss(model, batch, seed=4).total.item()


def test_when_batch_holds_instructions_expect_they_are_encoded(cfg):
    model = model_for(cfg)
    encoder = HashTextEncoder(cfg.text.out_dim, cfg.text.max_tokens)
    words = ["pick up the red cup", "open the drawer"]
    from_strings = loss(model, make_batch(cfg, text=words), text_encoder=encoder)
    from_tensor = loss(model, make_batch(cfg, text=encoder.encode(words)))
    assert from_strings.total.item() == from_tensor.total.item()
    with pytest.raises(ValueError, match="no text_encoder was given"):
        loss(model, make_batch(cfg, text=words))


@pytest.mark.parametrize(
    ("field", "shape", "message"),
    [
        ("frames", (2, 5, 3, 32, 32), r"batch.frames must have shape \[2, 5, 3, 64, 64\]"),
        ("state", (2, 14), r"batch.state must have shape \[2, 16\]"),
        ("actions", (2, 8, 7), r"batch.actions must have shape \[2, 8, 8\]"),
    ],
)
def test_when_batch_field_has_wrong_shape_expect_error_naming_it(cfg, field, shape, message):
    bad = dataclasses.replace(make_batch(cfg), **{field: torch.zeros(shape)})
    with pytest.raises(ValueError, match=message):
        loss(model_for(cfg), bad)


def test_when_batch_state_has_nan_expect_error(cfg):
    batch = make_batch(cfg)
    state = batch.state.clone()
    state[0, 3] = float("nan")
    with pytest.raises(ValueError, match="batch.state contains NaN"):
        loss(model_for(cfg), dataclasses.replace(batch, state=state))


def test_when_tiny_model_trains_on_a_fixed_batch_expect_action_loss_to_fall_tenfold(cfg):
    model, batch = model_for(cfg), make_batch(cfg)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(150):
        parts = loss(model, batch)  # the same draws every step: a fixed batch to memorise
        first = first if first is not None else parts.action.item()
        optimiser.zero_grad()
        parts.total.backward()
        optimiser.step()
        if parts.action.item() < first / 10:
            break
    assert parts.action.item() < first / 10, f"action loss went {first:.3f} -> {parts.action.item():.3f}"


def with_dropout(cfg, p=0.2):
    return dataclasses.replace(cfg, action_dit=dataclasses.replace(cfg.action_dit, dropout=p))


def pick(batch, rows):
    return TrainBatch(
        frames=batch.frames[rows],
        state=batch.state[rows],
        actions=batch.actions[rows],
        action_mask=batch.action_mask[rows],
        text=batch.text[rows],
    )


def test_when_sample_seeds_given_expect_each_samples_loss_independent_of_its_batch(cfg):
    # Dropout on, so that its masks are covered too: the batch's loss must be the mean of its
    # samples' losses computed alone, as a data-parallel split of the batch would compute them.
    model, batch = model_for(with_dropout(cfg)), make_batch(cfg, batch=3)
    seeds = [11, 12, 13]
    whole = compute_loss(model, batch, sample_seeds=seeds)
    alone = [compute_loss(model, pick(batch, [i]), sample_seeds=[s]) for i, s in enumerate(seeds)]
    torch.testing.assert_close(whole.action, torch.stack([p.action for p in alone]).mean())
    torch.testing.assert_close(whole.video, torch.stack([p.video for p in alone]).mean())
    reordered = compute_loss(model, pick(batch, [2, 0, 1]), sample_seeds=[13, 11, 12])
    torch.testing.assert_close(reordered.total, whole.total)


def test_when_dropout_active_expect_sample_seeds_to_draw_its_masks(cfg):
    model, batch = model_for(with_dropout(cfg)), make_batch(cfg)
    train = compute_loss(model, batch, sample_seeds=[1, 2])
    assert compute_loss(model, batch, sample_seeds=[1, 2]).action.item() == train.action.item()
    model.eval()
    assert compute_loss(model, batch, sample_seeds=[1, 2]).action.item() != train.action.item()
    model.train()
    # The dropout layers are back in train mode (drawing from the global RNG) after the call.
    assert compute_loss(model, batch, generator=torch.Generator().manual_seed(0)).action.item() != (
        compute_loss(model, batch, generator=torch.Generator().manual_seed(0)).action.item()
    )


def test_when_loss_computed_expect_action_entries_to_count_masked_entries_of_every_draw(cfg):
    batch = make_batch(cfg)
    mask = batch.action_mask.clone()
    mask[1, 5:] = 0.0  # the chunk ran past the episode's end
    parts = compute_loss(model_for(cfg), dataclasses.replace(batch, action_mask=mask), sample_seeds=[0, 1])
    assert parts.action_entries.item() == mask.sum().item() * cfg.training.action_noise_draws


def test_when_sample_seeds_misused_expect_clear_error(cfg):
    model, batch = model_for(cfg), make_batch(cfg)
    with pytest.raises(ValueError, match="one seed per sample"):
        compute_loss(model, batch, sample_seeds=[1])
    with pytest.raises(ValueError, match="either generator or sample_seeds"):
        compute_loss(model, batch, sample_seeds=[1, 2], generator=torch.Generator())
