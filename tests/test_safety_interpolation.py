"""CommandInterpolator: sparse targets to a per-tick reference whose velocity never steps, never past
the targets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_safety_helpers import SAFETY_SETTINGS

from dit4dit_policy.safety import CommandInterpolator

TICK = 0.002


def _interp(value=0.0, max_interval=0.1, min_interval=1e-3):
    it = CommandInterpolator(1, max_interval=max_interval, min_interval=min_interval)
    it.reset(np.array([value]))
    return it


def _at(it, t):
    return float(it.sample(t)[0])


def _stream(it, targets, period=0.02, arrivals=None, warm_up=50):
    """Push `warm_up` targets equal to the first one, then `targets`, stamped every `period` (arriving
    1 ms later unless `arrivals` says otherwise); returns the times and the reference sampled every
    tick, from the first of `targets` to 0.1 s after the last. The warm-up lets the schedule settle
    (the first target after reset() moves over max_interval, and the schedule starts ahead)."""
    targets = [targets[0]] * warm_up + list(targets)
    stamps = period * np.arange(len(targets))
    arrivals = stamps + 0.001 if arrivals is None else np.concatenate([stamps[:warm_up] + 0.001, arrivals])
    times = np.arange(arrivals[0], arrivals[-1] + 0.1, TICK)
    out, k = [], 0
    for now in times:
        while k < len(targets) and arrivals[k] <= now:
            it.push(np.array([targets[k]]), now=arrivals[k], stamp=stamps[k])
            k += 1
        out.append(_at(it, now))
    keep = times >= arrivals[warm_up]
    return times[keep], np.array(out)[keep]


def test_when_first_target_after_reset_expect_a_start_from_rest_and_arrival_after_one_and_a_half_intervals():
    it = _interp()
    it.push(np.array([1.0]), now=10.0, stamp=3.0)
    assert _at(it, 10.0) == 0.0
    assert _at(it, 10.1) == pytest.approx(0.5)  # the waypoint: midpoint of the reset value and the target
    assert _at(it, 10.125) == pytest.approx(0.75)  # then on in a line at the waypoint's speed
    assert _at(it, 10.15) == 1.0
    assert _at(it, 100.0) == 1.0  # at rest there: never extrapolated
    ref = [_at(it, 10.0 + TICK * k) for k in range(3)]
    assert ref[1] - ref[0] < ref[2] - ref[1]  # from rest: no velocity step at the start


def test_when_targets_on_a_line_at_50hz_expect_the_reference_to_move_at_their_speed_without_corners():
    _, ref = _stream(_interp(), [0.01 * k for k in range(20)])
    steps = np.diff(ref[20:150])  # after the start, before the end
    np.testing.assert_allclose(steps, 0.01 / 0.02 * TICK, rtol=5e-3)


def test_when_targets_accelerate_steadily_expect_the_reference_to_accelerate_as_much_never_more():
    accel = 20.0  # rad/s^2
    targets = [0.5 * accel * (0.02 * k) ** 2 for k in range(20)]
    _, ref = _stream(_interp(), targets)
    second = np.diff(ref[20:170], 2) / TICK**2
    # A line between targets would turn at each one within a tick: 0.4 rad/s in 2 ms, 200 rad/s^2.
    np.testing.assert_allclose(second, accel, rtol=0.02)


def test_when_a_target_arrives_expect_neither_the_reference_nor_its_velocity_to_jump():
    # In the bend, in the line (the second target's bend ends at 0.05, 1.5 intervals, the most it
    # may take; its line at 0.06).
    for arrival in (0.03, 0.052, 0.058):
        it = _interp()
        it.push(np.array([0.0]), now=0.0, stamp=0.0)
        it.push(np.array([0.2]), now=0.02, stamp=0.02)
        h = 1e-7
        before = np.array([_at(it, arrival - h), _at(it, arrival)])
        it.push(np.array([0.5]), now=arrival, stamp=0.04)
        after = np.array([_at(it, arrival), _at(it, arrival + h)])
        assert after[0] == before[1]
        assert (after[1] - after[0]) / h == pytest.approx((before[1] - before[0]) / h, rel=1e-4, abs=1e-6)


def test_when_two_targets_arrive_at_one_instant_expect_the_velocity_kept():
    it = _interp()
    for k in range(3):
        it.push(np.array([0.2 * k]), now=0.02 * k, stamp=0.02 * k)
    h = 1e-6
    before = (_at(it, 0.04 + h) - _at(it, 0.04)) / h
    assert before > 1.0  # moving
    it.push(np.array([0.6]), now=0.04, stamp=0.06)  # delivered together with the previous one
    assert (_at(it, 0.04 + h) - _at(it, 0.04)) / h == pytest.approx(before, rel=1e-3)


def test_when_delivery_jitters_expect_speed_from_the_stamps_and_the_reference_hardly_bent():
    rng = np.random.default_rng(3)
    late = 0.006
    arrivals = 0.02 * np.arange(50, 90) + rng.uniform(0.0, late, 40)  # stamps every 20 ms, arrivals 14-26 ms apart
    times, ref = _stream(_interp(), [0.02 * k for k in range(40)], arrivals=np.maximum.accumulate(arrivals))
    inside = times[1:] < arrivals[-1]
    assert (np.diff(ref)[inside] / TICK)[20:].mean() == pytest.approx(1.0, rel=0.01)  # 0.02 rad per 20 ms of stamps
    # Timed by arrival, each waypoint late or early by up to `late` would bend the reference by up
    # to 2 v late / T^2 (v = 1 rad/s): 30 rad/s^2. On the sender's schedule it is a fraction.
    accel = np.diff(ref, 2)[inside[1:]][20:] / TICK**2
    assert np.abs(accel).max() < 0.25 * 2 * 1.0 * late / 0.02**2


def test_when_a_target_is_delivered_behind_schedule_expect_it_counted_late_never_a_pause_or_jitter():
    it = _interp()
    _stream(it, [0.02 * k for k in range(10)], arrivals=0.02 * np.arange(50, 60) + 0.006)  # 6 ms late each
    assert it.late == 0
    it.push(np.array([0.3]), now=100.0, stamp=1.20)  # stamped 20 ms after the last, delivered ~99 s later
    assert it.late == 1
    it.push(np.array([0.3]), now=200.0, stamp=101.0)  # the sender paused: not late
    assert it.late == 1


def test_when_sampled_before_the_segment_start_expect_its_start():
    it = _interp(value=0.5)
    it.push(np.array([1.0]), now=1.0, stamp=1.0)
    assert _at(it, 0.5) == 0.5
    assert _at(it, float("nan")) == 0.5


def test_when_targets_come_in_a_burst_expect_the_interval_clamped_to_min_interval():
    it = _interp(min_interval=0.005)
    it.push(np.array([0.0]), now=0.0, stamp=0.0)
    it.push(np.array([1.0]), now=0.2, stamp=0.2)  # the reference rests on 0 by then
    it.push(np.array([2.0]), now=0.2 + 1e-6, stamp=0.2 + 1e-6)
    # The interval is 5 ms, not 1 us: the waypoint (1.5) is due within 1.5 of them, then the line.
    assert _at(it, 0.2 + 1e-6 + 0.0075) == pytest.approx(1.5)
    assert _at(it, 0.2 + 1e-6 + 0.0101) == 2.0


def test_when_target_follows_a_gap_expect_the_interval_clamped_to_max_interval():
    it = _interp(max_interval=0.1)
    it.push(np.array([0.0]), now=0.0, stamp=0.0)
    it.push(np.array([1.0]), now=5.0, stamp=5.0)
    assert _at(it, 5.1) == pytest.approx(0.5)
    assert _at(it, 5.15) == 1.0


def test_when_stamp_not_after_the_previous_expect_max_interval():
    it = _interp(max_interval=0.1)
    it.push(np.array([0.0]), now=0.0, stamp=1.0)
    it.push(np.array([1.0]), now=0.2, stamp=1.0)
    assert _at(it, 0.3) == pytest.approx(0.5)


def test_when_the_targets_turn_back_expect_the_reference_never_past_the_furthest():
    _, ref = _stream(_interp(), [0.0, 0.1, 0.3, 0.6, 0.6, 0.2, -0.1])
    assert ref.max() <= 0.6 and ref.min() >= -0.1
    assert ref[-1] == -0.1


def test_when_interval_bounds_invalid_or_target_shape_wrong_expect_value_error():
    with pytest.raises(ValueError, match="min_interval"):
        CommandInterpolator(1, max_interval=0.01, min_interval=0.02)
    with pytest.raises(ValueError, match="min_interval"):
        CommandInterpolator(1, max_interval=float("inf"))
    with pytest.raises(ValueError, match="shape"):
        _interp().push(np.zeros(2), now=0.0, stamp=0.0)


@SAFETY_SETTINGS
@given(
    st.lists(
        # (target, time since the previous one, stamp interval: the sender's clock, not the arrivals')
        st.tuples(st.floats(-10, 10), st.floats(0.0, 0.2), st.floats(-0.1, 0.2)),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.floats(0.0, 0.3), min_size=1, max_size=8),
)
def test_when_any_target_stream_expect_reference_between_known_values_and_settling_on_the_newest(
    stream, sample_offsets
):
    it, t, stamp, seen = _interp(), 0.0, 0.0, [0.0]
    for target, gap, stamp_gap in stream:
        t, stamp = t + gap, stamp + stamp_gap
        it.push(np.array([target]), now=t, stamp=stamp)
        seen.append(target)
        for off in sample_offsets:
            assert min(seen) - 1e-12 <= _at(it, t + off) <= max(seen) + 1e-12  # float rounding only
    # A bend of at most 1.5 intervals, a line of 0.5 (and a nanosecond for float rounding).
    assert _at(it, t + 2 * it.max_interval + 1e-9) == seen[-1]


def test_when_a_target_comes_expect_has_target_until_the_next_reset():
    it = CommandInterpolator(1, max_interval=0.1)
    assert not it.has_target
    it.push(np.array([0.2]), now=0.0, stamp=0.0)
    assert it.has_target
    it.reset(np.array([0.2]))
    assert not it.has_target
