"""The pure limit functions against independent oracles: just inside (unchanged), just outside
(changed, and then within limits), and hypothesis over arbitrary finite inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_safety_helpers import EPS, SAFETY_SETTINGS, oracle_bounds

from dit4dit_policy.safety.limits import (
    BRAKING_SHARE,
    EASE_TIME,
    LimitSnapshot,
    approach_step,
    bound_effort,
    clamp_position,
    limit_acceleration,
    limit_motion,
    limit_velocity,
    stopping_distance,
)

LO, HI = np.array([-1.0, 0.2]), np.array([1.0, 0.5])
TINY = 1e-9
finite = st.floats(-1e3, 1e3, allow_nan=False)


def test_when_position_just_inside_expect_unchanged():
    q = np.array([LO[0] + TINY, HI[1] - TINY])
    np.testing.assert_array_equal(clamp_position(q, LO, HI), q)


def test_when_position_just_outside_expect_moved_onto_the_bound():
    q = np.array([LO[0] - TINY, HI[1] + TINY])
    out = clamp_position(q, LO, HI)
    assert np.all(out != q)
    np.testing.assert_array_equal(out, [LO[0], HI[1]])


@SAFETY_SETTINGS
@given(st.lists(st.floats(-1e300, 1e300, allow_nan=False), min_size=2, max_size=2))
def test_when_any_finite_position_expect_scalar_min_max_result(values):
    out = clamp_position(np.array(values), LO, HI)
    expected = [min(max(v, lo), hi) for v, lo, hi in zip(values, LO, HI, strict=True)]
    np.testing.assert_array_equal(out, expected)


def test_when_step_just_inside_velocity_bound_expect_unchanged():
    step = np.array([0.01 - TINY, -(0.01 - TINY)])
    np.testing.assert_array_equal(limit_velocity(step, np.full(2, 0.01)), step)


def test_when_step_just_outside_velocity_bound_expect_cut_to_it():
    out = limit_velocity(np.array([0.01 + TINY, -0.01 - TINY]), np.full(2, 0.01))
    np.testing.assert_array_equal(out, [0.01, -0.01])


def test_when_step_change_just_inside_acceleration_bound_expect_unchanged():
    prev, u = np.array([0.003, -0.002]), np.full(2, 2e-4)
    step = prev + np.array([2e-4 - TINY, -(2e-4 - TINY)])
    np.testing.assert_array_equal(limit_acceleration(step, prev, u), step)


def test_when_step_change_just_outside_acceleration_bound_expect_cut_to_it():
    prev, u = np.array([0.003, -0.002]), np.full(2, 2e-4)
    out = limit_acceleration(prev + np.array([2e-4 + TINY, -2e-4 - TINY]), prev, u)
    np.testing.assert_allclose(np.abs(out - prev), u, rtol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_when_easing_over_half_a_tick_expect_the_discrete_braking_curve_that_stops_exactly_on_the_point(n):
    u = 2e-4
    distance = u * n * (n + 1) / 2  # the point a stop from step n*u reaches
    step = float(approach_step(np.array(distance), np.array(u), 0.5))
    assert step == pytest.approx(n * u, abs=1e-15)
    covered = 0.0
    while step > 1e-15:  # decelerate by u per tick, as the acceleration bound allows
        covered += step
        step -= u
    assert covered == pytest.approx(distance, abs=1e-12)
    assert float(stopping_distance(np.array(n * u), np.array(u))) == pytest.approx(distance, rel=1e-12)


def test_when_goal_within_one_accel_step_expect_the_whole_error():
    error = np.array([1e-4, -1e-4, 0.0])
    np.testing.assert_array_equal(approach_step(error, np.full(3, 2e-4), 5.0), error)


@SAFETY_SETTINGS
@given(distance=st.floats(1e-3, 2.0), accel=st.floats(1.0, 200.0), dt=st.floats(2e-4, 0.01), tau=st.floats(1e-3, 0.05))
def test_when_approaching_expect_the_speed_of_the_curve_whatever_the_tick(distance, accel, dt, tau):
    u = accel * dt * dt
    step = float(approach_step(np.array(-distance), np.array(u), tau / dt))
    assert step < 0 and -step <= distance
    v = -step / dt
    if -step < distance:  # on the curve (not the whole error): (v + a tau)^2 = 2 a d + (a tau)^2, whatever dt is
        assert (v + accel * tau) ** 2 == pytest.approx(2 * accel * distance + (accel * tau) ** 2, rel=1e-9)
        assert v <= distance / tau * (1 + 1e-12)  # never faster than the first-order approach


DT = 0.002
MAX_VELOCITY, MAX_ACCELERATION = np.full(2, 3.0), np.full(2, 50.0)  # 0.006 rad and 2e-4 rad per 2 ms tick


def _motion(goal, q_prev, v_prev=0.0, dt=DT, dt_prev=DT):
    return limit_motion(
        np.asarray(goal, float),
        np.asarray(q_prev, float),
        v_prev * np.ones(2),
        dt,
        dt_prev,
        LO,
        HI,
        MAX_VELOCITY,
        MAX_ACCELERATION,
    )


def test_when_goal_within_every_bound_expect_it_reached_in_one_tick():
    near = BRAKING_SHARE * 50.0 * DT * DT * 0.999  # within one tick of the approach's planned deceleration
    m = _motion([0.1 + near, 0.3 - near], [0.1, 0.3])
    np.testing.assert_allclose(m.q, [0.1 + near, 0.3 - near], rtol=0, atol=1e-16)
    assert (m.position_clamps, m.velocity_clamps, m.acceleration_clamps) == (0, 0, 0)


def test_when_previous_speed_over_velocity_bound_expect_velocity_to_win_over_acceleration():
    m = _motion([0.9, 0.49], [0.0, 0.3], v_prev=10.0)  # decelerating by only 2e-4 would stay too fast
    np.testing.assert_allclose(m.step, [0.006, 0.006])
    assert m.velocity_clamps == 2


def test_when_previous_position_outside_range_expect_position_to_win_over_velocity():
    m = _motion([0.0, 0.3], [1.5, 0.9])
    np.testing.assert_array_equal(m.q, HI)
    assert m.position_clamps == 2 and np.all(np.abs(m.step) > 0.006)


def test_when_goal_outside_range_expect_output_to_settle_on_the_bound_never_past_it():
    q, v = np.array([0.0, 0.3]), np.zeros(2)
    for _ in range(2000):
        m = limit_motion(np.array([5.0, -5.0]), q, v, DT, DT, LO, HI, MAX_VELOCITY, MAX_ACCELERATION)
        q, v = m.q, m.step / DT
        assert np.all((LO <= q) & (q <= HI))
    np.testing.assert_allclose(q, [HI[0], LO[1]], atol=1e-12)


def test_when_moving_from_rest_to_a_far_goal_on_uneven_ticks_expect_bounded_motion_no_overshoot_and_rest_on_it():
    goal, rng = np.array([0.9, 0.45]), np.random.default_rng(3)
    q, v, dt_prev = np.array([-0.9, 0.25]), np.zeros(2), DT
    for _ in range(3000):
        dt = DT * rng.uniform(0.2, 1.8)
        m = limit_motion(goal, q, v, dt, dt_prev, LO, HI, MAX_VELOCITY, MAX_ACCELERATION)
        v_new = m.step / dt
        assert np.all(np.abs(v_new) <= MAX_VELOCITY * (1 + EPS))
        assert np.all(np.abs(v_new - v) <= MAX_ACCELERATION * (dt + dt_prev) / 2 * (1 + EPS))
        assert np.all(m.q <= goal)  # braking aims at the goal: never past it
        q, v, dt_prev = m.q, v_new, dt
    np.testing.assert_array_equal(q, goal)


def _follow(goal_at, ticks, late=0.0, span_alone=False):
    """limit_motion following goal_at(t) from rest on it, ticking every DT on schedule, a share
    `late` of the ticks up to 0.9 DT late (the next one back on schedule, cut short, as the bridge's
    loop does); the number of velocity and acceleration clamps and the worst lag. span_alone: tell
    limit_motion the previous tick was as long as this one."""
    rng = np.random.default_rng(7)
    t, q, v, dt_prev, clamps, lag = 0.0, goal_at(0.0), np.zeros(2), DT, 0, 0.0
    for k in range(1, ticks + 1):
        now = k * DT + (DT * rng.uniform(0.15, 0.9) if rng.random() < late else 0.0)
        dt, t = now - t, now
        m = limit_motion(goal_at(t), q, v, dt, dt if span_alone else dt_prev, LO, HI, MAX_VELOCITY, MAX_ACCELERATION)
        clamps += m.acceleration_clamps + m.velocity_clamps
        q, v, dt_prev = m.q, m.step / dt, dt
        lag = max(lag, float(np.abs(goal_at(t) - q).max()))
    return clamps, lag


def _swing(t):  # from rest, 3 Hz, 0.05 rad: 0.94 rad/s and 17.8 rad/s^2 at most, reversing 6x a second
    return np.array([0.0, 0.35]) + 0.05 * np.cos(2 * np.pi * 3.0 * t) * np.array([1.0, -1.0])


def test_when_a_smooth_goal_reverses_expect_it_followed_without_the_bounds_acting(monkeypatch):
    clamps, lag = _follow(_swing, 2000)
    assert clamps == 0
    assert lag < 0.94**2 / (2 * BRAKING_SHARE * 50.0) + 0.94 * EASE_TIME + 1e-3  # stopping distance + v tau
    # The bare braking curve (time constant half a tick) meets the turning goal still at speed.
    monkeypatch.setattr("dit4dit_policy.safety.limits.EASE_TIME", DT / 2)
    assert _follow(_swing, 2000)[0] > 0


def test_when_ticks_come_late_and_then_short_expect_a_smooth_goal_followed_without_the_bounds_acting():
    assert _follow(_swing, 5000, late=0.05)[0] == 0
    # Bounding the change of speed over the short tick alone clips what the late one started.
    assert _follow(_swing, 5000, late=0.05, span_alone=True)[0] > 0


@SAFETY_SETTINGS
@given(
    goal=st.lists(finite, min_size=2, max_size=2),
    q_prev=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2),
    speed=st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=2),
    dt=st.floats(1e-4, 0.01),
    dt_prev=st.floats(1e-4, 0.01),
)
def test_when_any_goal_expect_output_in_range_velocity_and_acceleration_bounded(goal, q_prev, speed, dt, dt_prev):
    max_velocity, max_acceleration = np.array([3.0, 2.0]), np.array([50.0, 100.0])
    q_prev = LO + np.array(q_prev) * (HI - LO)  # anywhere in range
    v_prev = np.array(speed) * max_velocity
    m = limit_motion(np.array(goal), q_prev, v_prev, dt, dt_prev, LO, HI, max_velocity, max_acceleration)
    v = m.step / dt
    assert np.all((LO <= m.q) & (m.q <= HI))
    assert np.all(np.abs(v) <= max_velocity * (1 + EPS))
    if m.position_clamps == 0:
        assert np.all(np.abs(v - v_prev) <= max_acceleration * (dt + dt_prev) / 2 * (1 + EPS) + 1e-12)


def _effort(q, dq, tau, kp, kd, qm, dqm):
    return tau + kp * (q - qm) + kd * (dq - dqm)


def _arrays(*values):
    return [np.array([v], dtype=float) for v in values]


def test_when_effort_just_inside_bound_expect_nothing_changed():
    q, dq, tau, kp, kd, qm, dqm, e = _arrays(0.1, 0.0, 1.0, 40.0, 1.0, 0.0, 0.0, 5.0 + TINY)  # 1 + 4 = 5
    out = bound_effort(q, dq, tau, kp, kd, qm, dqm, e)
    assert (out.tau[0], out.kp[0], out.kd[0], out.clamps) == (1.0, 40.0, 1.0, 0)


def test_when_feed_forward_alone_over_bound_expect_tau_cut_to_it():
    q, dq, tau, kp, kd, qm, dqm, e = _arrays(0.0, 0.0, -5.0 - TINY, 40.0, 1.0, 0.0, 0.0, 5.0)
    out = bound_effort(q, dq, tau, kp, kd, qm, dqm, e)
    assert (out.tau[0], out.kp[0], out.kd[0], out.clamps) == (-5.0, 40.0, 1.0, 1)


def test_when_spring_over_bound_expect_kp_scaled_and_feed_forward_given_what_is_left():
    q, dq, tau, kp, kd, qm, dqm, e = _arrays(1.0, 0.0, 3.0, 40.0, 1.0, 0.0, 0.0, 25.0)  # spring 40 > 25
    out = bound_effort(q, dq, tau, kp, kd, qm, dqm, e)
    assert out.kp[0] == pytest.approx(25.0) and out.kd[0] == 1.0 and out.tau[0] == 0.0
    assert abs(_effort(q, dq, out.tau, out.kp, out.kd, qm, dqm)[0]) <= 25.0 * (1 + EPS)


def test_when_damping_alone_over_bound_expect_kd_scaled_to_it():
    q, dq, tau, kp, kd, qm, dqm, e = _arrays(0.0, 0.0, 0.0, 0.0, 8.0, 0.0, 2.0, 5.0)  # |8 * 2| > 5
    out = bound_effort(q, dq, tau, kp, kd, qm, dqm, e)
    assert out.kd[0] == pytest.approx(2.5) and out.kp[0] == 0.0 and out.clamps == 1


def test_when_spring_and_damper_oppose_within_bound_expect_nothing_changed():
    q, dq, tau, kp, kd, qm, dqm, e = _arrays(0.2, 0.0, 0.0, 40.0, 2.0, 0.0, 3.0, 5.0)  # 8 - 6 = 2
    out = bound_effort(q, dq, tau, kp, kd, qm, dqm, e)
    assert out.clamps == 0 and out.kp[0] == 40.0 and out.kd[0] == 2.0


gains = st.floats(0.0, 500.0)


@SAFETY_SETTINGS
@given(
    q=finite, dq=finite, tau=st.floats(-1e12, 1e12), kp=gains, kd=gains, qm=finite, dqm=finite,
    e=st.floats(0.5, 200.0),
)  # fmt: skip
def test_when_any_command_expect_effort_and_feed_forward_bounded_and_gains_never_raised(q, dq, tau, kp, kd, qm, dqm, e):
    args = _arrays(q, dq, tau, kp, kd, qm, dqm, e)
    out = bound_effort(*args)
    applied = _effort(args[0], args[1], out.tau, out.kp, out.kd, args[5], args[6])[0]
    assert abs(applied) <= e * (1 + EPS) + EPS
    assert abs(out.tau[0]) <= e
    assert 0.0 <= out.kp[0] <= kp and 0.0 <= out.kd[0] <= kd
    if abs(tau) <= e and abs(_effort(*args[:7])[0]) <= e:
        assert (out.tau[0], out.kp[0], out.kd[0], out.clamps) == (tau, kp, kd, 0)


def test_when_snapshot_taken_expect_oracle_values_and_read_only_arrays(joint_table):
    snap, b = LimitSnapshot.from_table(joint_table), oracle_bounds(joint_table)
    for name in ("lower", "upper", "max_velocity", "max_acceleration", "max_effort"):
        np.testing.assert_allclose(getattr(snap, name), getattr(b, name), rtol=0, atol=1e-12)
        with pytest.raises(ValueError):
            getattr(snap, name)[0] = 0.0


def test_when_table_switches_a_bound_off_expect_error_naming_the_joint(joint_table):
    j = joint_table.joints[3]
    off = dataclasses.replace(j, limits=dataclasses.replace(j.limits, has_velocity_limits=False))
    table = dataclasses.replace(joint_table, joints=(*joint_table.joints[:3], off, *joint_table.joints[4:]))
    with pytest.raises(ValueError, match=f"{j.name}.*velocity"):
        LimitSnapshot.from_table(table)
