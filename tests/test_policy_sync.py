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
