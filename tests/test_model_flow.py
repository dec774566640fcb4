"""Flow-matching primitives and the Euler sampler, against independent oracles."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dit4dit_policy.model.flow import (
    action_flow_loss,
    interpolate,
    sample_action_tau,
    velocity_target,
    video_flow_loss,
)
from dit4dit_policy.model.sampler import euler_sample, tau_schedule


def test_when_tau_is_0_or_1_expect_data_or_noise():
    x0, noise = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.equal(interpolate(x0, noise, torch.zeros(3)), x0)
    assert torch.equal(interpolate(x0, noise, torch.ones(3)), noise)


def test_when_moving_along_the_path_expect_velocity_is_its_derivative():
    x0, noise = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 5, 3, dtype=torch.float64)
    tau = torch.tensor([0.3, 0.8], dtype=torch.float64)
    eps = 1e-6
    slope = (interpolate(x0, noise, tau + eps) - interpolate(x0, noise, tau - eps)) / (2 * eps)
    torch.testing.assert_close(slope, velocity_target(x0, noise))


def test_when_schedule_has_4_steps_expect_the_release_times():
    assert tau_schedule(4) == [1.0, 0.75, 0.5, 0.25]


@settings(max_examples=25, deadline=None)
@given(steps=st.integers(1, 10), seed=st.integers(0, 2**31 - 1))
def test_when_velocity_field_is_perfect_expect_sampler_lands_on_target(steps, seed):
    g = torch.Generator().manual_seed(seed)
    target, noise = (
        torch.randn(2, 16, 8, generator=g, dtype=torch.float64),
        torch.randn(2, 16, 8, generator=g, dtype=torch.float64),
    )
    calls = []

    def perfect(x, tau):
        calls.append(tau.clone())
        # The straight path through x at time tau ends at target: v = (x - target) / tau.
        return (x - target) / tau.to(x.dtype).view(-1, 1, 1)

    out = euler_sample(perfect, noise, steps)
    # tau is float32 (the action DiT discretises it): exact when 1/steps is a power of two.
    exact = steps & (steps - 1) == 0
    torch.testing.assert_close(out, target, rtol=0, atol=1e-12 if exact else 1e-6)
    assert [c[0].item() for c in calls] == pytest.approx(tau_schedule(steps))


def test_when_action_tau_sampled_expect_beta_1_5_1_scaled():
    tau = sample_action_tau(200_000, 1.5, 0.999, generator=torch.Generator().manual_seed(0))
    assert tau.min() >= 0 and tau.max() <= 1 / 0.999
    s = tau * 0.999
    # Beta(1.5, 1): mean 0.6, CDF s^1.5.
    assert s.mean().item() == pytest.approx(0.6, abs=0.005)
    assert (s < 0.5).float().mean().item() == pytest.approx(0.5**1.5, abs=0.005)


def test_when_prediction_changes_on_conditioning_frame_expect_same_video_loss():
    pred, target = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    perturbed = pred.clone()
    perturbed[:, :, 0] += 100.0
    assert video_flow_loss(perturbed, target) == video_flow_loss(pred, target)
    perturbed[:, :, 1] += 1.0
    assert video_flow_loss(perturbed, target) != video_flow_loss(pred, target)


def test_when_prediction_changes_on_masked_entries_expect_same_action_loss():
    pred, target = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    mask = torch.zeros(2, 4, 6)
    mask[..., :4] = 1.0
    perturbed = pred.clone()
    perturbed[..., 4:] += 100.0
    assert action_flow_loss(perturbed, target, mask) == action_flow_loss(pred, target, mask)
    expected = ((pred[..., :4] - target[..., :4]) ** 2).mean()
    torch.testing.assert_close(action_flow_loss(pred, target, mask), expected)


def test_when_action_mask_is_empty_expect_error():
    with pytest.raises(ValueError, match="selects no entries"):
        action_flow_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))
