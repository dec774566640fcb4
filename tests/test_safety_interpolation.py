"""CommandInterpolator: sparse targets to a per-tick reference, never past the newest target."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_safety_helpers import SAFETY_SETTINGS

from dit4dit_policy.safety import CommandInterpolator


def _interp(value=0.0, max_interval=0.1, min_interval=1e-3):
    it = CommandInterpolator(1, max_interval=max_interval, min_interval=min_interval)
    it.reset(np.array([value]))
    return it


def _at(it, t):
    return float(it.sample(t)[0])


def test_when_first_target_after_reset_expect_linear_move_over_max_interval():
    it = _interp()
    it.push(np.array([1.0]), now=10.0)
    assert _at(it, 10.0) == 0.0
    assert _at(it, 10.05) == pytest.approx(0.5)
    assert _at(it, 10.1) == 1.0


def test_when_targets_every_20ms_expect_each_reached_over_the_observed_interval():
    it = _interp()
    it.push(np.array([0.0]), now=0.0)
    it.push(np.array([0.2]), now=0.02)
    assert _at(it, 0.03) == pytest.approx(0.1)
    assert _at(it, 0.04) == 0.2


def test_when_sampled_long_after_the_newest_target_expect_exactly_it_never_extrapolated():
    it = _interp()
    it.push(np.array([0.3]), now=0.0)
    it.push(np.array([0.4]), now=0.02)
    assert _at(it, 100.0) == 0.4


def test_when_sampled_before_the_segment_start_expect_its_start():
    it = _interp(value=0.5)
    it.push(np.array([1.0]), now=1.0)
    assert _at(it, 0.5) == 0.5
    assert _at(it, float("nan")) == 0.5


def test_when_target_arrives_mid_segment_expect_the_reference_to_continue_from_where_it_is():
    it = _interp()
    it.push(np.array([1.0]), now=0.0)  # 0 -> 1 over 0.1 s
    before = _at(it, 0.04)
    it.push(np.array([-1.0]), now=0.04)
    assert _at(it, 0.04) == before
    assert _at(it, 0.06) == pytest.approx(before + 0.5 * (-1.0 - before))


def test_when_targets_come_in_a_burst_expect_the_interval_clamped_to_min_interval():
    it = _interp(min_interval=0.005)
    it.push(np.array([0.0]), now=0.0)
    it.push(np.array([1.0]), now=1e-6)
    assert _at(it, 1e-6 + 0.0025) == pytest.approx(0.5)


def test_when_target_follows_a_gap_expect_the_interval_clamped_to_max_interval():
    it = _interp(max_interval=0.1)
    it.push(np.array([0.0]), now=0.0)
    it.push(np.array([1.0]), now=5.0)
    assert _at(it, 5.05) == pytest.approx(0.5)
    assert _at(it, 5.1) == 1.0


def test_when_50hz_stream_sampled_at_500hz_expect_equal_steps_within_each_segment():
    it = _interp()
    t, targets = 0.0, [0.0, 0.04, 0.1, 0.12]
    it.push(np.array([targets[0]]), now=t)
    for k in range(1, len(targets)):
        t = 0.02 * k
        it.push(np.array([targets[k]]), now=t)
        samples = [_at(it, t + 0.002 * i) for i in range(11)]
        np.testing.assert_allclose(np.diff(samples), (targets[k] - targets[k - 1]) / 10, atol=1e-12)


def test_when_interval_bounds_invalid_or_target_shape_wrong_expect_value_error():
    with pytest.raises(ValueError, match="min_interval"):
        CommandInterpolator(1, max_interval=0.01, min_interval=0.02)
    with pytest.raises(ValueError, match="min_interval"):
        CommandInterpolator(1, max_interval=float("inf"))
    with pytest.raises(ValueError, match="shape"):
        _interp().push(np.zeros(2), now=0.0)


@SAFETY_SETTINGS
@given(
    st.lists(
        st.tuples(st.floats(-10, 10), st.floats(0.0, 0.2)),  # (target, time since the previous one)
        min_size=1,
        max_size=12,
    ),
    st.lists(st.floats(0.0, 0.3), min_size=1, max_size=8),
)
def test_when_any_target_stream_expect_reference_between_known_values_and_settling_on_the_newest(
    stream, sample_offsets
):
    it, t, seen = _interp(), 0.0, [0.0]
    for target, gap in stream:
        t += gap
        it.push(np.array([target]), now=t)
        seen.append(target)
        for off in sample_offsets:
            assert min(seen) - 1e-12 <= _at(it, t + off) <= max(seen) + 1e-12  # float rounding only
    assert _at(it, t + 0.1) == seen[-1]
