"""ChunkBlender: time-indexed chunk execution, crossfade without jumps, hold then exhaustion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dit4dit_policy.policy import AddResult, ChunkBlender, Unavailable

DT = 0.1  # action period
TICK = 0.02  # 50 Hz control


def _blender(blend_time=0.2, hold_time=0.2):
    return ChunkBlender(DT, blend_time, hold_time)


def _ramp(h, start=0.0, step=1.0, dims=1):
    """Chunk whose action k is start + k * step in every joint: its value at time t is easy to state."""
    return np.repeat((start + step * np.arange(h))[:, None], dims, axis=1)


def test_when_sampled_at_action_times_expect_actions_and_a_ramp_stays_linear_in_between():
    b = _blender()
    assert b.add(_ramp(4), obs_stamp=1.0, now=1.0) is AddResult.ACCEPTED
    # a_k is for t_obs + (k + 1) dt; before a_0 the target is a_0.
    assert b.target(1.0)[0] == 0.0
    assert b.target(1.1)[0] == 0.0
    assert b.target(1.15)[0] == pytest.approx(0.5)
    assert b.target(1.3)[0] == pytest.approx(2.0)
    assert b.target(1.4)[0] == pytest.approx(3.0)
    assert b.target(1.45)[0] == 3.0


def test_when_actions_bend_expect_the_velocity_continuous_at_each_action_time():
    actions = np.array([0.0, 0.0, 1.0, 4.0, 2.0, 2.0])[:, None]

    def at(t):
        b = _blender()
        b.add(actions, obs_stamp=1.0, now=1.0)
        return b.target(t)[0]

    eps = 1e-6
    for k in range(1, 5):  # interior actions, at 1.0 + (k + 1) * DT
        t = 1.0 + (k + 1) * DT
        assert at(t) == pytest.approx(actions[k, 0])
        # Catmull-Rom: the slope there is the mean of the neighbouring slopes, from both sides.
        mean_slope = (actions[k + 1, 0] - actions[k - 1, 0]) / (2 * DT)
        assert (at(t) - at(t - eps)) / eps == pytest.approx(mean_slope, rel=1e-3, abs=1e-3)
        assert (at(t + eps) - at(t)) / eps == pytest.approx(mean_slope, rel=1e-3, abs=1e-3)


def test_when_chunk_arrives_late_expect_its_past_actions_skipped():
    b = _blender()
    # Inferred from the observation at 1.0, arriving 0.25 s later: a_0, a_1 are in the past.
    b.add(_ramp(6, start=10.0), obs_stamp=1.0, now=1.25)
    assert b.target(1.25)[0] == pytest.approx(11.5)


def test_when_every_chunk_is_the_same_constant_expect_exactly_that_constant_every_tick():
    b = _blender()
    c = np.full((8, 3), 0.123456789)
    t, seen = 0.0, []
    for k in range(60):
        t = k * TICK
        if k % 5 == 0:
            b.add(c, obs_stamp=t - 0.03, now=t)
        seen.append(b.target(t))
    assert all(np.array_equal(x, c[0]) for x in seen)


def test_when_new_chunk_arrives_expect_target_unchanged_at_arrival_then_new_chunk_after_blend():
    b = _blender(blend_time=0.2)
    b.add(_ramp(20, start=0.0, step=0.0), obs_stamp=0.0, now=0.0)
    before = b.target(0.5)[0]
    b.add(_ramp(20, start=1.0, step=0.0), obs_stamp=0.45, now=0.5)
    assert b.target(0.5)[0] == before == 0.0
    assert b.target(0.6)[0] == pytest.approx(0.5)
    assert b.target(0.71)[0] == 1.0


def test_when_a_chunk_comes_late_expect_its_crossfade_stretched_to_blend_per_delay_times_the_delay():
    b = ChunkBlender(DT, blend_time=0.2, hold_time=0.2, blend_per_delay=2.0)
    b.add(_ramp(20, start=0.0, step=0.0), obs_stamp=0.0, now=0.0)
    # 0.25 s from observation to arrival: a 0.5 s crossfade, half done after 0.25 s.
    b.add(_ramp(20, start=1.0, step=0.0), obs_stamp=0.25, now=0.5)
    assert b.target(0.5)[0] == 0.0
    assert b.target(0.75)[0] == pytest.approx(0.5)
    assert b.target(0.9)[0] < 1.0, "crossfaded over blend_time although the chunk came late"
    assert b.target(1.0)[0] == 1.0
    # A chunk on time (0.05 s: 2 x 0.05 < blend_time) still takes blend_time.
    b.add(_ramp(20, start=2.0, step=0.0), obs_stamp=0.95, now=1.0)
    assert b.target(1.1)[0] == pytest.approx(1.5)
    assert b.target(1.21)[0] == 2.0


def test_when_a_chunk_on_time_follows_a_late_one_mid_crossfade_expect_continuity_and_its_own_blend():
    b = ChunkBlender(DT, blend_time=0.2, hold_time=0.2, blend_per_delay=2.0)
    b.add(_ramp(30, start=0.0, step=0.0), obs_stamp=0.0, now=0.0)
    b.add(_ramp(30, start=1.0, step=0.0), obs_stamp=0.25, now=0.5)  # late: 0.5 s crossfade
    before = b.target(0.6)[0]
    b.add(_ramp(30, start=2.0, step=0.0), obs_stamp=0.55, now=0.6)  # on time: 0.2 s, ends first
    assert b.target(0.6)[0] == before
    xs = [b.target(0.6 + k * TICK)[0] for k in range(1, 11)]
    assert np.all(np.diff([before, *xs]) > 0), "the target went back while crossfading to higher values"
    assert xs[-1] == 2.0 and len(b._chunks) == 1, "the older, longer crossfade kept the newest chunk from taking over"


def test_when_chunk_arrives_mid_crossfade_expect_continuity_and_old_chunks_dropped_after():
    b = _blender(blend_time=0.2)
    b.add(_ramp(30, start=0.0, step=0.0), obs_stamp=0.0, now=0.0)
    b.add(_ramp(30, start=1.0, step=0.0), obs_stamp=0.1, now=0.1)
    mid = b.target(0.2)[0]
    b.add(_ramp(30, start=-1.0, step=0.0), obs_stamp=0.15, now=0.2)
    assert b.target(0.2)[0] == mid == pytest.approx(0.5)
    assert b.target(0.4)[0] == -1.0
    assert len(b._chunks) == 1


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(
        st.tuples(
            st.lists(st.floats(-2, 2), min_size=4, max_size=12),  # actions of one joint
            st.floats(0.0, 0.5),  # inference delay
            st.integers(3, 15),  # ticks until the next chunk
        ),
        min_size=2,
        max_size=6,
    )
)
def test_when_chunks_arrive_with_arbitrary_delays_expect_tick_steps_within_the_crossfade_bound(chunks):
    blend = 0.2
    b = _blender(blend_time=blend, hold_time=10.0)
    # The cubic through the actions is at most 1.5x as steep as the steepest step between them,
    # and smoothstep's weight at most 1.5x as steep as a linear one.
    slope = 1.5 * max(max(abs(np.diff(a))) for a, _, _ in chunks) / DT
    spread = 1.5 * (max(max(a) for a, _, _ in chunks) - min(min(a) for a, _, _ in chunks))
    tick, prev = 100, None
    for actions, delay, gap in chunks:
        now = tick * TICK
        b.add(np.array(actions)[:, None], obs_stamp=now - delay, now=now)
        for _ in range(gap):
            n = len(b._chunks)  # before `target` prunes: every chunk live at the previous tick too
            x = b.target(tick * TICK)
            tick += 1
            if not isinstance(x, np.ndarray):  # an expired first chunk: nothing to execute yet
                continue
            # With n chunks live, each level of T_k = T_{k-1} + w_k (C_k - T_{k-1}) adds one chunk's
            # motion and one weight step (TICK / blend) times the gap: no jump at arrival.
            bound = n * slope * TICK + (n - 1) * spread * TICK / blend + 1e-9
            if prev is not None:
                assert abs(x[0] - prev) <= bound
            prev = x[0]


def test_when_crossfading_at_50hz_expect_the_arrival_step_no_larger_than_without_a_new_chunk():
    b = _blender(blend_time=0.2)
    b.add(_ramp(20, start=0.0, step=0.1), obs_stamp=0.0, now=0.0)
    a0 = b.target(0.50)[0]
    free_step = b.target(0.52)[0] - a0
    b2 = _blender(blend_time=0.2)
    b2.add(_ramp(20, start=0.0, step=0.1), obs_stamp=0.0, now=0.0)
    a = b2.target(0.50)[0]
    b2.add(_ramp(20, start=5.0, step=0.1), obs_stamp=0.2, now=0.52)  # 0.32 s late, far away
    step = b2.target(0.52)[0] - a
    assert step == pytest.approx(free_step)


def test_when_a_chunk_arrives_expect_the_crossfade_to_start_without_a_velocity_step():
    b = _blender(blend_time=0.2)
    b.add(_ramp(30, start=0.0, step=0.0), obs_stamp=0.0, now=0.0)
    b.add(_ramp(30, start=1.0, step=0.0), obs_stamp=0.45, now=0.5)
    first, second = b.target(0.5 + TICK)[0], b.target(0.5 + 2 * TICK)[0]
    # smoothstep(0.1) = 0.028, smoothstep(0.2) = 0.104: the offset comes in gradually, where a
    # linear crossfade would step the velocity to 1 / 0.2 s at once (0.1 per tick).
    assert first == pytest.approx(0.028)
    assert second == pytest.approx(0.104)
    assert b.target(0.6)[0] == pytest.approx(0.5)


def test_when_past_the_last_action_expect_hold_then_exhausted_then_recovery_from_the_held_value():
    b = _blender(hold_time=0.2)
    assert b.target(0.0) is Unavailable.NO_CHUNK
    b.add(_ramp(3), obs_stamp=0.0, now=0.05)  # last action at 0.3
    assert b.target(0.31)[0] == 2.0
    assert b.target(0.5)[0] == 2.0
    assert b.target(0.5001) is Unavailable.EXHAUSTED
    b.add(_ramp(5, start=7.0, step=0.0), obs_stamp=0.9, now=1.0)
    assert b.target(1.0)[0] == 2.0  # crossfade starts from the held last action
    assert b.target(1.21)[0] == 7.0


def test_when_chunk_expired_or_older_than_current_expect_rejected_and_ignored():
    b = _blender()
    assert b.add(_ramp(3), obs_stamp=0.0, now=0.3001) is AddResult.EXPIRED
    assert b.target(0.31) is Unavailable.NO_CHUNK
    assert b.add(_ramp(10), obs_stamp=1.0, now=1.0) is AddResult.ACCEPTED
    assert b.add(_ramp(10, start=9.0), obs_stamp=1.0, now=1.0) is AddResult.OUT_OF_ORDER
    assert b.target(1.1)[0] == 0.0


def test_when_inputs_invalid_expect_errors_naming_them():
    b = _blender()
    with pytest.raises(ValueError, match="shape"):
        b.add(np.zeros(5), obs_stamp=0.0, now=0.0)
    with pytest.raises(ValueError, match="non-finite.*action 2, joint 1"):
        b.add(np.array([[0, 0], [0, 0], [0, np.nan]]), obs_stamp=0.0, now=0.0)
    b.add(np.zeros((4, 2)), obs_stamp=0.0, now=0.0)
    with pytest.raises(ValueError, match="3 joints"):
        b.add(np.zeros((4, 3)), obs_stamp=0.1, now=0.1)
    with pytest.raises(ValueError, match="never decrease"):
        b.target(0.05)
    with pytest.raises(ValueError, match="blend_time"):
        ChunkBlender(0.1, 0.0, 0.1)
    with pytest.raises(ValueError, match="blend_per_delay >= 0"):
        ChunkBlender(0.1, 0.2, 0.1, blend_per_delay=-1.0)


def test_when_chunk_observation_is_stamped_in_the_future_expect_it_refused():
    b = _blender()
    assert b.add(_ramp(8), obs_stamp=500.0, now=100.0) is AddResult.FROM_FUTURE
    assert b.target(100.0) is Unavailable.NO_CHUNK
    assert b.add(_ramp(8), obs_stamp=99.95, now=100.0) is AddResult.ACCEPTED, "a later, honest chunk was blocked"
