"""StampSync: newest fresh frame paired with the nearest joint state within the slop, or why not."""

from __future__ import annotations

import numpy as np
import pytest

from dit4dit_policy.policy import NoObservation, Observation, StampSync, SyncFailure


def _sync(slop=0.01, max_frame_age=0.2, max_joint_age=0.1, buffer_size=8):
    return StampSync(slop, max_frame_age, max_joint_age, buffer_size)


def _q(v):
    return np.array([float(v)])


def test_when_nothing_arrived_expect_no_frame_then_no_joints():
    s = _sync()
    assert s.latest(0.0) == NoObservation(SyncFailure.NO_FRAME)
    s.add_frame("f", 0.0)
    assert s.latest(0.0) == NoObservation(SyncFailure.NO_JOINTS)


def test_when_joints_around_the_frame_expect_the_nearest_one():
    s = _sync()
    for t in (0.990, 0.997, 1.006, 1.02):
        s.add_joints(_q(t), t)
    s.add_frame("f", 1.0)
    obs = s.latest(1.03)
    assert isinstance(obs, Observation)
    assert (obs.frame, obs.frame_stamp, obs.joint_stamp) == ("f", 1.0, 0.997)
    assert obs.joints[0] == 0.997


def test_when_nearest_joint_just_outside_slop_expect_no_match_and_just_inside_expect_match():
    s = _sync(slop=0.01)
    s.add_frame("f", 1.0)
    s.add_joints(_q(0), 1.0105)
    assert s.latest(1.02) == NoObservation(SyncFailure.NO_MATCH_WITHIN_SLOP)
    s.add_joints(_q(1), 0.9905)
    assert s.latest(1.02).joint_stamp == 0.9905


def test_when_newest_frame_has_no_partner_expect_an_older_fresh_frame():
    s = _sync(slop=0.005)
    s.add_joints(_q(0), 1.0)
    s.add_frame("old", 1.001)
    s.add_frame("new", 1.05)
    obs = s.latest(1.06)
    assert (obs.frame, obs.joint_stamp) == ("old", 1.0)


def test_when_all_frames_or_joints_too_old_expect_stale_reasons():
    s = _sync(max_frame_age=0.2, max_joint_age=0.1)
    s.add_frame("f", 1.0)
    s.add_joints(_q(0), 1.0)
    assert isinstance(s.latest(1.1), Observation)
    assert s.latest(1.1001) == NoObservation(SyncFailure.STALE_JOINTS)
    assert s.latest(1.2001) == NoObservation(SyncFailure.STALE_FRAME)


def test_when_only_matching_joint_is_stale_expect_no_match_not_a_stale_pairing():
    s = _sync(slop=0.05, max_frame_age=0.2, max_joint_age=0.1)
    s.add_frame("f", 1.0)
    s.add_joints(_q(0), 0.99)  # within slop of the frame, but too old at now
    s.add_joints(_q(1), 1.1)  # fresh, outside slop
    assert s.latest(1.095) == NoObservation(SyncFailure.NO_MATCH_WITHIN_SLOP)


def test_when_messages_arrive_out_of_order_expect_stamp_order_and_bounded_buffers():
    s = _sync(buffer_size=3)
    for t in (5.0, 1.0, 3.0, 2.0, 4.0):
        s.add_frame(f"f{t}", t)
        s.add_joints(_q(t), t)
    assert s.newest_stamps() == (5.0, 5.0)
    assert s._frames.stamps == [3.0, 4.0, 5.0]
    assert s.latest(5.0).frame == "f5.0"


def test_when_same_stamp_twice_expect_the_later_message_kept():
    s = _sync()
    s.add_joints(_q(1), 1.0)
    s.add_joints(_q(2), 1.0)
    s.add_frame("f", 1.0)
    assert s.latest(1.0).joints[0] == 2.0


def test_when_inputs_invalid_expect_errors_naming_them():
    s = _sync()
    with pytest.raises(ValueError, match="frame stamp"):
        s.add_frame("f", float("nan"))
    with pytest.raises(ValueError, match="joints"):
        s.add_joints(np.array([0.0, np.inf]), 1.0)
    with pytest.raises(ValueError, match="joint state stamp"):
        s.add_joints(_q(0), float("inf"))


def test_when_cleared_expect_nothing():
    s = _sync()
    s.add_frame("f", 1.0)
    s.add_joints(_q(0), 1.0)
    s.clear()
    assert s.latest(1.0) == NoObservation(SyncFailure.NO_FRAME)
    assert s.newest_stamps() == (None, None)


def test_when_inputs_are_stamped_in_the_future_expect_them_not_fresh_until_their_time():
    from dit4dit_policy.policy.sync import FUTURE_TOLERANCE

    s = _sync()
    s.add_frame("ahead", 110.0)  # a sender whose clock runs 10 s ahead, then goes silent
    s.add_joints(_q(0), 110.0)
    assert s.latest(100.0) == NoObservation(SyncFailure.STALE_FRAME)
    assert isinstance(s.latest(110.0 - FUTURE_TOLERANCE / 2), Observation)  # within clock-skew tolerance
    s.add_frame("now", 100.0)
    s.add_joints(_q(1), 100.0)
    obs = s.latest(100.0)
    assert isinstance(obs, Observation) and obs.frame == "now", "a future stamp hid the fresh input"


# ---------------------------------------------------------------- whole recorded streams (offline)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dit4dit_policy.policy import AddResult, ChunkBlender  # noqa: E402
from dit4dit_policy.policy.sync import (  # noqa: E402
    _StampedBuffer,
    align_recording,
    interpolate,
    nearest_indices,
    pair_within_slop,
    stamp_order,
)

_stamps = st.lists(st.integers(0, 400).map(lambda k: k / 40), min_size=1, max_size=30, unique=True).map(sorted)


@settings(max_examples=200, deadline=None)
@given(_stamps, st.lists(st.integers(-40, 440).map(lambda k: k / 80), min_size=1, max_size=20))
def test_when_finding_nearest_expect_the_brute_force_choice_with_the_earlier_on_a_tie(stamps, targets):
    got = nearest_indices(stamps, targets)
    for t, i in zip(targets, got, strict=True):
        distances = [abs(s - t) for s in stamps]
        assert i == distances.index(min(distances))  # index() finds the earliest of equal minima


def test_when_pairing_expect_partner_within_slop_else_minus_one():
    joints = [1.0, 1.125, 1.25]  # binary fractions: the distances below are exact
    frames = [0.9375, 1.0625, 1.09375, 1.3125, 1.375]
    assert pair_within_slop(frames, joints, 0.0625).tolist() == [0, 0, 1, 2, -1]
    assert pair_within_slop(frames, joints, 0.03125).tolist() == [-1, -1, 1, -1, -1]
    assert pair_within_slop(frames, joints, 0.0).tolist() == [-1, -1, -1, -1, -1]
    assert pair_within_slop([1.0], joints, 0.0).tolist() == [0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 12).map(float), min_size=1, max_size=30))
def test_when_ordering_a_recorded_stream_expect_what_the_node_buffer_holds(arrivals):
    buffer = _StampedBuffer(capacity=len(arrivals))
    for position, stamp in enumerate(arrivals):
        buffer.add(stamp, position)
    order = stamp_order(arrivals)
    assert [arrivals[i] for i in order] == buffer.stamps
    assert order.tolist() == buffer.items


def test_when_interpolating_expect_linear_between_stamps_and_the_chunk_executors_targets_at_them():
    """A dataset row's action is the command at the row's time + one period; the executor runs a
    chunk's action k at t_obs + (k + 1) periods: at those times (and before and after the chunk)
    the two agree. In between, recorded commands are linear, as the bridge's interpolator runs them."""
    dt = 0.1
    values = np.array([[0.0, 1.0], [0.5, 1.0], [0.2, -1.0], [0.2, 3.0]])
    blender = ChunkBlender(action_period=dt, blend_time=0.2, hold_time=1.0)
    assert blender.add(values, obs_stamp=1.9, now=1.9) == AddResult.ACCEPTED
    stamps = 1.9 + dt * (1 + np.arange(len(values)))
    times = np.array([1.9, 2.0, 2.1, 2.2, 2.3, 2.5])
    expected = np.stack([blender.target(t) for t in times])
    np.testing.assert_allclose(interpolate(stamps, values, times), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(interpolate(stamps, values, [2.03, 2.15]), [[0.15, 1.0], [0.35, 0.0]], atol=1e-12)
    assert interpolate(stamps, values, [2.25])[0, 0] == 0.2, "equal neighbours must give that value exactly"


def test_when_interpolating_unusable_streams_expect_errors():
    with pytest.raises(ValueError, match="strictly increasing"):
        interpolate([0.0, 0.0], np.zeros((2, 1)), [0.0])
    with pytest.raises(ValueError, match="values"):
        interpolate([0.0, 1.0], np.zeros((3, 1)), [0.0])


def _aligned(frames, joints, commands, **kw):
    return align_recording(np.array(frames), np.array(joints), np.array(commands), **kw)


def test_when_aligning_expect_grid_on_a_frame_nearest_frames_paired_joints_and_next_row_action_times():
    frames = 10.0 + np.arange(0, 61) / 30  # 30 Hz camera for 2 s
    frames = frames + np.where(np.arange(61) % 2, 0.004, -0.003)  # jitter
    joints = 9.95 + np.arange(0, 215) / 100  # 100 Hz, starts before the camera
    commands = 10.05 + np.arange(0, 100) / 50  # 50 Hz teleop, starts 50 ms after the camera
    a = _aligned(frames, joints, commands, rate=10.0, slop=0.02)
    # First frame from which all streams cover a row: t >= commands[0] - 0.1 is frame 0.
    assert a.times[0] == frames[0]
    np.testing.assert_allclose(np.diff(a.times), 0.1, atol=1e-9)
    np.testing.assert_allclose(a.action_times, a.times + 0.1, atol=1e-12)
    # Ends where the commands stop: the last row's action time is within the command stream.
    assert a.action_times[-1] <= commands[-1] < a.action_times[-1] + 0.1
    for k, t in enumerate(a.times):
        assert a.frames[k] == int(np.argmin(np.abs(frames - t)))
        assert a.joints[k] == int(np.argmin(np.abs(joints - frames[a.frames[k]])))


def test_when_camera_has_a_gap_expect_error_naming_the_time():
    frames = np.concatenate([np.arange(0, 30) / 30, 1.5 + np.arange(0, 30) / 30])
    joints = np.arange(0, 301) / 100
    with pytest.raises(ValueError, match=r"camera gap: no frame within 0.050 s of 1.1"):
        _aligned(frames, joints, joints, rate=10.0, slop=0.02)


def test_when_joint_states_pause_expect_error_naming_the_frame():
    frames = np.arange(0, 61) / 30
    joints = np.concatenate([np.arange(0, 100) / 100, 1.2 + np.arange(0, 80) / 100])
    with pytest.raises(ValueError, match=r"no joint state within slop 0.02 s of the frame at 1.1"):
        _aligned(frames, joints, joints, rate=10.0, slop=0.02)


def test_when_streams_do_not_overlap_expect_no_row_error():
    with pytest.raises(ValueError, match="no row fits"):
        _aligned([0.0, 0.1], [5.0, 5.1], [5.0, 5.1], rate=10.0, slop=0.02)
    with pytest.raises(ValueError, match="command stream is empty"):
        _aligned([0.0, 0.1], [0.0, 0.1], [], rate=10.0, slop=0.02)
    with pytest.raises(ValueError, match="strictly increasing"):
        _aligned([0.1, 0.0], [0.0, 0.1], [0.0, 0.1], rate=10.0, slop=0.02)
