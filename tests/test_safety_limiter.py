"""SafetyLimiter scenarios against a tiny plant: config, verdicts, start-up, watchdog, faults, e-stop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_safety_helpers import EPS, PERIOD, Rig, motor_effort

from dit4dit_policy.safety import (
    EnableResult,
    Fault,
    SafetyConfig,
    SafetyLimiter,
    SafetyState,
    Verdict,
    controllable_mask,
)
from dit4dit_policy.safety.limits import BRAKING_SHARE, EASE_TIME

S = SafetyState
FAST_RAMP = {"ramp_time": 0.05}


def _names(table, side, group="arm"):
    return [j.name for j in table.joints if j.group == group and j.name.startswith(side)]


def _enabled_rig(table, **cfg) -> Rig:
    rig = Rig(table, SafetyConfig(**cfg))
    rig.tick()
    assert rig.limiter.enable(rig.now) is EnableResult.RAMPING
    return rig


def _active_rig(table, **cfg) -> Rig:
    """Enabled, past a short ramp, following a command on the left arm at its current pose."""
    rig = _enabled_rig(table, **{**FAST_RAMP, **cfg})
    arm = _names(table, "left_")
    for _ in range(5):
        assert rig.command(arm, rig.plant.q[rig.rows(arm)]) is Verdict.ACCEPTED
        rig.tick(10)
    assert rig.limiter.state is S.ACTIVE
    return rig


def _first_tick_in(rig: Rig, state: SafetyState, limit: float, states: bool = True) -> float:
    """Tick until the limiter is in `state`; the time of that tick."""
    while rig.limiter.state is not state:
        assert rig.now < limit, f"no {state} by t={rig.now}"
        rig.tick(states=states)
    return rig.now


def _assert_step_bounded(rig: Rig, outs):
    for a, b in zip(outs, outs[1:], strict=False):
        assert np.all(np.abs(b.q - a.q) <= rig.bounds.max_velocity * PERIOD + EPS)


# Config ---------------------------------------------------------------------------------------
def test_when_config_defaults_expect_the_documented_values():
    c = SafetyConfig()
    assert (c.mode, c.masked_joints, c.ramp_time, c.hold_after, c.damp_after) == (
        "arm_sdk",
        (),
        2.0,
        0.1,
        0.5,
    )
    assert c.state_timeout == 0.1 and c.damping_kd == 8.0


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"hold_after": 0.5, "damp_after": 0.5}, "hold_after"),
        ({"ramp_time": 0.0}, "ramp_time"),
        ({"state_timeout": -0.1}, "state_timeout"),
        ({"damping_kd": math.nan}, "damping_kd"),
        ({"max_tick": math.inf}, "max_tick"),
        ({"max_tick": 0.02}, "max_tick"),  # longer than EASE_TIME: the approach could pass its goal
        ({"hold_after": True}, "hold_after"),
        ({"mode": "highcmd"}, "mode"),
        ({"masked_joints": "left_knee_joint"}, "masked_joints"),
        ({"masked_joints": None}, "masked_joints"),
        ({"masked_joints": [3]}, "masked_joints"),
    ],
)
def test_when_config_invalid_expect_value_error_naming_the_field(fields, named):
    with pytest.raises(ValueError, match=named):
        SafetyConfig(**fields)


def test_when_masked_joint_not_in_table_expect_value_error_naming_it(joint_table):
    with pytest.raises(ValueError, match="tail_joint"):
        SafetyLimiter(joint_table, SafetyConfig(masked_joints=["tail_joint"]))


def test_when_arm_sdk_mode_expect_arms_and_waist_controllable_and_legs_never(joint_table):
    mask = controllable_mask(joint_table, SafetyConfig(mode="arm_sdk"))
    groups = np.array([j.group for j in joint_table.joints])
    np.testing.assert_array_equal(mask, (groups == "arm") | (groups == "waist"))
    assert not mask[groups == "leg"].any()


def test_when_lowcmd_mode_with_a_mask_expect_every_joint_but_the_masked_ones(joint_table):
    masked = ("left_knee_joint", "waist_yaw_joint")
    mask = controllable_mask(joint_table, SafetyConfig(mode="lowcmd", masked_joints=masked))
    expected = np.array([n not in masked for n in joint_table.names])
    np.testing.assert_array_equal(mask, expected)
    lim = SafetyLimiter(joint_table, SafetyConfig(mode="lowcmd", masked_joints=masked))
    assert set(lim.controllable_names) == set(joint_table.names) - set(masked)


# Verdicts -------------------------------------------------------------------------------------
def _hostile(table, stamp):
    """(label, submit args without `now`, expected verdict) for each way a command can be wrong."""
    arm = _names(table, "left_")[:2]
    two = np.array([0.1, 0.2])
    return [
        ("nan position", (arm, [math.nan, 0.2], None, None, stamp + 1), Verdict.REJECTED_NONFINITE),
        ("inf effort", (arm, two, None, [0.0, math.inf], stamp + 1), Verdict.REJECTED_NONFINITE),
        ("nan velocity", (arm, two, [math.nan, 0.0], None, stamp + 1), Verdict.REJECTED_NONFINITE),
        ("nan stamp", (arm, two, None, None, math.nan), Verdict.REJECTED_NONFINITE),
        (
            "unknown joint",
            ([arm[0], "tail_joint"], two, None, None, stamp + 1),
            Verdict.REJECTED_UNKNOWN_JOINT,
        ),
        ("short position", (arm, [0.1], None, None, stamp + 1), Verdict.REJECTED_LENGTH_MISMATCH),
        ("long effort", (arm, two, None, [0.0, 0.0, 0.0], stamp + 1), Verdict.REJECTED_LENGTH_MISMATCH),
        ("2-d position", (arm, [[0.1, 0.2]], None, None, stamp + 1), Verdict.REJECTED_LENGTH_MISMATCH),
        ("duplicate", ([arm[0], arm[0]], two, None, None, stamp + 1), Verdict.REJECTED_DUPLICATE_NAME),
        ("empty", ([], [], None, None, stamp + 1), Verdict.REJECTED_EMPTY),
        ("text value", (arm, ["a", "b"], None, None, stamp + 1), Verdict.REJECTED_MALFORMED),
        ("list as name", ([arm, arm[1]], two, None, None, stamp + 1), Verdict.REJECTED_MALFORMED),
        ("equal stamp", (arm, two, None, None, stamp), Verdict.REJECTED_STALE_STAMP),
        ("older stamp", (arm, two, None, None, stamp - 5), Verdict.REJECTED_STALE_STAMP),
        ("leg only", (["left_knee_joint"], [0.5], None, None, stamp + 1), Verdict.REJECTED_NOT_CONTROLLABLE),
        (
            "arm and leg",
            ([arm[0], "left_knee_joint"], two, None, None, stamp + 1),
            Verdict.REJECTED_NOT_CONTROLLABLE,
        ),
    ]


@pytest.mark.parametrize("case", range(16))
def test_when_command_hostile_expect_rejected_whole_counted_and_outputs_as_if_never_sent(joint_table, case):
    twin, rig = _active_rig(joint_table), _active_rig(joint_table)
    arm = _names(joint_table, "left_")
    for r in (twin, rig):  # the same good command, far enough away to keep both moving
        assert r.command(arm, r.plant.q[r.rows(arm)] + 0.3) is Verdict.ACCEPTED
        r.tick(3)
    label, args, expected = _hostile(joint_table, rig.stamp)[case]  # rig.stamp: the last accepted
    assert rig.limiter.submit(*args, rig.now) is expected, label
    status = rig.limiter.status(rig.now)
    assert status.rejected[expected] == 1 and sum(status.rejected.values()) == 1
    assert status.accepted == twin.limiter.status(twin.now).accepted
    for a, b in zip(twin.tick(40), rig.tick(40), strict=True):
        for field in ("q", "dq", "tau", "kp", "kd", "enabled"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert rig.limiter.state is twin.limiter.state


def test_when_hostile_cases_listed_expect_every_rejection_kind_covered(joint_table):
    covered = {v for _, _, v in _hostile(joint_table, 0.0)}
    not_by_content = {Verdict.ACCEPTED, Verdict.REJECTED_NOT_ENABLED, Verdict.REJECTED_LATCHED}
    state_only = {Verdict.REJECTED_IMPLAUSIBLE}
    assert covered == set(Verdict) - not_by_content - state_only
    assert len(_hostile(joint_table, 0.0)) == 16  # the parametrize range above


def test_when_command_names_a_subset_expect_unnamed_joints_to_keep_their_targets(joint_table):
    rig = _active_rig(joint_table)
    left, right = _names(joint_table, "left_"), _names(joint_table, "right_")
    a = rig.plant.q[rig.rows(left)] + 0.2
    b = rig.plant.q[rig.rows(right)] - 0.2
    assert rig.command(left, a) is Verdict.ACCEPTED
    for _ in range(60):  # only the right arm from here on, keeping the watchdog fed
        rig.tick(10)
        assert rig.command(right, b) is Verdict.ACCEPTED
    np.testing.assert_allclose(rig.out.q[rig.rows(left)], a, atol=1e-6)
    np.testing.assert_allclose(rig.out.q[rig.rows(right)], b, atol=1e-6)


def test_when_disabled_expect_commands_refused_and_no_motor_enabled(joint_table):
    rig = Rig(joint_table, SafetyConfig())
    arm = _names(joint_table, "left_")
    for _ in range(20):
        assert rig.command(arm, rig.plant.q[rig.rows(arm)] + 0.3) is Verdict.REJECTED_NOT_ENABLED
        for out in rig.tick(5):
            assert not out.enabled.any() and rig.weight == 0.0
            assert not (out.kp.any() or out.kd.any() or out.tau.any() or out.dq.any())
    assert rig.limiter.state is S.DISABLED


# Start-up -------------------------------------------------------------------------------------
def test_when_enable_without_a_fresh_state_expect_refused(joint_table):
    lim = SafetyLimiter(joint_table, SafetyConfig())
    assert lim.enable(0.0) is EnableResult.REFUSED_NO_STATE
    lim.update_state(joint_table.column("default_position"), np.zeros(29), 1.0)
    assert lim.enable(1.0 + 0.1 + 1e-6) is EnableResult.REFUSED_NO_STATE
    assert lim.enable(math.nan) is EnableResult.REFUSED_BAD_TIME
    assert lim.enable(1.05) is EnableResult.RAMPING
    assert lim.enable(1.06) is EnableResult.ALREADY_ENABLED


def test_when_enabled_expect_the_first_output_exactly_the_measured_pose(joint_table):
    q0 = joint_table.column("default_position") + 0.03
    rig = Rig(joint_table, SafetyConfig(), q0=q0)
    rig.plant.dq[:] = 0.2  # drifting before enable
    rig.tick(3)
    measured = rig.plant.q.copy()
    assert rig.limiter.enable(rig.now) is EnableResult.RAMPING
    rig.plant.dq[:] = 0.0
    out = rig.tick()[0]
    ctrl = rig.limiter.controllable
    np.testing.assert_array_equal(out.q[ctrl], measured[ctrl])
    np.testing.assert_array_equal(out.enabled, ctrl)
    assert rig.weight == 1.0 and rig.limiter.state is S.RAMP


def test_when_measured_pose_outside_soft_range_expect_the_ramp_to_start_on_the_range_edge(joint_table):
    q0 = joint_table.column("default_position")
    elbow = joint_table.index("left_elbow_joint")
    q0[elbow] = joint_table.joints[elbow].limits.max_position  # at the hard stop, past the soft range
    rig = Rig(joint_table, SafetyConfig(), q0=q0)
    assert rig.limiter.enable(rig.now) is EnableResult.RAMPING
    out = rig.tick()[0]
    assert out.q[elbow] == rig.bounds.upper[elbow]


def test_when_ramping_toward_a_far_target_expect_it_reached_about_ramp_time_later_and_not_before(joint_table):
    rig = _enabled_rig(joint_table)  # ramp_time 2 s
    arm = _names(joint_table, "right_")
    start = rig.plant.q[rig.rows(arm)].copy()
    target = np.clip(start + 0.8, rig.bounds.lower[rig.rows(arm)], rig.bounds.upper[rig.rows(arm)])
    t0, outs, progress = rig.now, [], {}
    while rig.now < t0 + 2.3:
        assert rig.command(arm, target) is Verdict.ACCEPTED
        outs += rig.tick(10)
        frac = (rig.out.q[rig.rows(arm)] - start) / (target - start)
        progress[round(rig.now - t0, 2)] = frac
    _assert_step_bounded(rig, outs)
    # Smoothstep over 2 s (0.104 at 0.4 s, 0.5 at 1 s, 0.972 at 1.8 s), a little lag.
    assert np.all((0.05 < progress[0.4]) & (progress[0.4] < 0.11))
    assert np.all((0.4 < progress[1.0]) & (progress[1.0] < 0.5))
    assert np.all(progress[1.8] < 0.972)
    np.testing.assert_allclose(rig.out.q[rig.rows(arm)], target, atol=1e-6)
    assert rig.limiter.state is S.ACTIVE


@pytest.mark.parametrize("wait", [0.0, 0.3])
def test_when_a_short_ramp_moves_half_a_radian_expect_neither_velocity_nor_acceleration_bound_to_act(joint_table, wait):
    rig = _enabled_rig(joint_table, ramp_time=0.5)  # the simulator sessions' ramp
    rig.tick(int(wait / PERIOD))  # the first command comes late (HOLD meanwhile), as after a reset
    arm = _names(joint_table, "right_")
    rows = rig.rows(arm)
    target = np.clip(rig.plant.q[rows] + 0.5, rig.bounds.lower[rows], rig.bounds.upper[rows])
    t0 = rig.now
    while rig.now < t0 + 0.7:
        assert rig.command(arm, target) is Verdict.ACCEPTED
        rig.tick(10)
    clamped = rig.limiter.status(rig.now).clamped
    # The ramp starts with the first command and at rest (smoothstep): counted from enable, a late
    # first command would find it mostly run and the goal rushing to the target.
    assert (clamped["velocity"], clamped["acceleration"]) == (0, 0)
    np.testing.assert_allclose(rig.out.q[rows], target, atol=1e-6)


def test_when_enabled_and_no_command_ever_comes_expect_hold_then_damping_at_their_deadlines(joint_table):
    rig = _enabled_rig(joint_table)
    t_enable = rig.now
    t_hold = _first_tick_in(rig, S.HOLD, 1.0)
    t_damp = _first_tick_in(rig, S.DAMPING, 1.0)
    assert 0 < t_hold - (t_enable + 0.1) <= PERIOD + EPS
    assert 0 < t_damp - (t_enable + 0.5) <= PERIOD + EPS


# Watchdog -------------------------------------------------------------------------------------
def test_when_commands_stop_expect_hold_then_damping_each_within_one_tick_of_its_deadline(joint_table):
    rig = _active_rig(joint_table)
    t_last = rig.now - rig.limiter.status(rig.now).since_command
    t_hold = _first_tick_in(rig, S.HOLD, 2.0)
    assert rig.weight == 1.0 and np.array_equal(rig.out.kp, joint_table.column("kp") * rig.limiter.controllable)
    t_damp = _first_tick_in(rig, S.DAMPING, 2.0)
    assert 0 < t_hold - (t_last + 0.1) <= PERIOD + EPS
    assert 0 < t_damp - (t_last + 0.5) <= PERIOD + EPS
    assert rig.weight == 0.0 and not rig.out.kp.any()


def test_when_fresh_command_arrives_in_hold_expect_resume_from_the_held_pose(joint_table):
    rig = _active_rig(joint_table)
    arm = _names(joint_table, "left_")
    _first_tick_in(rig, S.HOLD, 2.0)
    held = rig.tick(5)
    assert rig.command(arm, rig.plant.q[rig.rows(arm)] + 0.2) is Verdict.ACCEPTED
    assert rig.limiter.state is S.ACTIVE
    _assert_step_bounded(rig, held + rig.tick(20))


def test_when_fresh_command_arrives_in_damping_expect_a_new_ramp_from_the_measured_pose(joint_table):
    rig = _active_rig(joint_table)
    arm = _names(joint_table, "left_")
    _first_tick_in(rig, S.DAMPING, 2.0)
    rig.plant.q[rig.rows(arm)] += 0.1  # the arm sagged while damped
    rig.tick()
    measured = rig.plant.q.copy()
    assert rig.command(arm, measured[rig.rows(arm)] + 0.3) is Verdict.ACCEPTED
    assert rig.limiter.state is S.RAMP
    out = rig.tick()[0]
    ctrl = rig.limiter.controllable
    np.testing.assert_allclose(out.q[ctrl], measured[ctrl], atol=1e-12)  # the ramp's first output
    assert rig.weight == 1.0


def test_when_hold_begins_while_moving_fast_expect_a_bounded_smooth_stop(joint_table):
    rig = _active_rig(joint_table)
    arm = _names(joint_table, "left_")
    shoulder = rig.rows(arm)[0]
    assert rig.command(arm[:1], [rig.bounds.upper[shoulder]]) is Verdict.ACCEPTED
    before = rig.tick(49)  # moving at speed when the watchdog fires
    assert abs(before[-1].dq[shoulder]) > 1.0
    outs = before[-1:] + [*rig.tick(), *rig.tick(100)]
    assert rig.limiter.state is S.HOLD
    accel = rig.bounds.max_acceleration[shoulder]
    dq = np.array([o.dq[shoulder] for o in outs])
    assert np.all(np.abs(np.diff(dq)) <= accel * PERIOD + EPS)
    assert np.all(dq * np.sign(dq[0]) >= -1e-9) and dq[-1] == 0.0  # brakes to a stop, never comes back
    assert rig.limiter.status(rig.now).clamped["acceleration"] > 0
    _assert_step_bounded(rig, outs)


def test_when_damping_a_fast_joint_expect_kp_zero_and_kd_cut_to_the_effort_limit(joint_table):
    rig = _active_rig(joint_table)
    _first_tick_in(rig, S.DAMPING, 2.0)
    wrist = joint_table.index("left_wrist_yaw_joint")  # max_effort 5 N*m
    rig.plant.dq[wrist] = 2.0  # damping_kd 8 * 2 rad/s would be 16 N*m
    assert rig.limiter.update_state(rig.plant.q, rig.plant.dq, rig.now + 1e-4) is Verdict.ACCEPTED
    out = rig.tick(states=False)[0]
    ctrl = rig.limiter.controllable
    assert not out.kp.any() and not out.tau.any() and not out.dq.any()
    assert out.kd[wrist] == pytest.approx(5.0 / 2.0)
    slow = ctrl & (np.arange(29) != wrist)
    np.testing.assert_array_equal(out.kd[slow], 8.0)
    np.testing.assert_array_equal(out.enabled, ctrl)
    assert rig.weight == 0.0


# Faults ---------------------------------------------------------------------------------------
def test_when_lowstate_stops_expect_fault_within_one_tick_latched_until_reset(joint_table):
    rig = _active_rig(joint_table)
    arm = _names(joint_table, "left_")
    t_state = rig.now
    t_fault = _first_tick_in(rig, S.FAULT, 1.0, states=False)
    assert 0 < t_fault - (t_state + 0.1) <= PERIOD + EPS
    assert rig.limiter.status(rig.now).fault is Fault.STATE_TIMEOUT
    rig.tick(50)  # states are back: still latched
    assert rig.limiter.state is S.FAULT and rig.weight == 0.0 and not rig.out.kp.any()
    assert rig.command(arm, rig.plant.q[rig.rows(arm)]) is Verdict.REJECTED_LATCHED
    assert rig.limiter.enable(rig.now) is EnableResult.REFUSED_LATCHED
    rig.limiter.reset()
    assert rig.limiter.state is S.DISABLED and rig.limiter.status(rig.now).fault is None
    assert not rig.tick()[0].enabled.any()
    assert rig.limiter.enable(rig.now) is EnableResult.RAMPING


@pytest.mark.parametrize(
    ("q_bad", "dq_bad", "verdict", "fault"),
    [
        (math.nan, 0.0, Verdict.REJECTED_NONFINITE, Fault.STATE_NONFINITE),
        (0.0, math.inf, Verdict.REJECTED_NONFINITE, Fault.STATE_NONFINITE),
        (1e9, 0.0, Verdict.REJECTED_IMPLAUSIBLE, Fault.STATE_IMPLAUSIBLE),
        ("short", 0.0, Verdict.REJECTED_LENGTH_MISMATCH, Fault.STATE_MALFORMED),
        ("text", 0.0, Verdict.REJECTED_MALFORMED, Fault.STATE_MALFORMED),
    ],
)
def test_when_lowstate_broken_expect_it_rejected_and_a_latched_fault(joint_table, q_bad, dq_bad, verdict, fault):
    rig = _active_rig(joint_table)
    q, dq = rig.plant.q.copy(), rig.plant.dq.copy()
    if q_bad == "short":
        q = q[:-1]
    elif q_bad == "text":
        q = ["x"] * 29
    else:
        q[3], dq[3] = q_bad, dq_bad
    assert rig.limiter.update_state(q, dq, rig.now + 1e-4) is verdict
    rig.tick()
    status = rig.limiter.status(rig.now)
    assert (status.state, status.fault, status.state_rejected[verdict]) == (S.FAULT, fault, 1)
    assert rig.weight == 0.0 and not rig.out.kp.any() and np.all(np.isfinite(rig.out.q))


def test_when_lowstate_time_goes_backwards_expect_it_ignored_without_a_fault(joint_table):
    rig = _active_rig(joint_table)
    q = rig.plant.q + 0.5
    assert rig.limiter.update_state(q, rig.plant.dq, rig.now - 0.01) is Verdict.REJECTED_STALE_STAMP
    assert rig.limiter.update_state(q, rig.plant.dq, rig.now) is Verdict.REJECTED_STALE_STAMP
    rig.tick()
    assert rig.limiter.state is S.ACTIVE
    assert rig.limiter.status(rig.now).state_rejected[Verdict.REJECTED_STALE_STAMP] == 2


def test_when_lowstate_missing_while_disabled_expect_no_fault(joint_table):
    rig = Rig(joint_table, SafetyConfig())
    rig.tick(200, states=False)
    assert rig.limiter.state is S.DISABLED
    assert rig.limiter.enable(rig.now) is EnableResult.REFUSED_NO_STATE


@pytest.mark.parametrize("offset", [0.0, -0.001, math.nan])
def test_when_step_time_does_not_advance_expect_a_clock_fault_with_damping(joint_table, offset):
    rig = _active_rig(joint_table)
    out, weight = rig.limiter.step(rig.now + offset)
    status = rig.limiter.status(rig.now)
    assert (status.state, status.fault, weight) == (S.FAULT, Fault.CLOCK, 0.0)
    assert not out.kp.any() and np.array_equal(out.enabled, rig.limiter.controllable)


def test_when_a_tick_comes_late_expect_no_more_motion_than_max_tick_allows(joint_table):
    rig = _active_rig(joint_table, max_tick=0.004)
    arm = _names(joint_table, "left_")
    assert rig.command(arm, rig.bounds.upper[rig.rows(arm)]) is Verdict.ACCEPTED
    before = rig.tick(20)[-1]
    after = rig.tick(dt=0.05)[0]  # states and the command are still fresh enough
    assert rig.limiter.state is S.ACTIVE
    assert np.all(np.abs(after.q - before.q) <= rig.bounds.max_velocity * 0.004 + EPS)


# E-stop and disable ---------------------------------------------------------------------------
def test_when_estop_expect_latched_damping_until_reset_then_disabled_until_enable_ramps(joint_table):
    rig = _active_rig(joint_table)
    arm = _names(joint_table, "left_")
    rig.limiter.estop()
    for _ in range(10):
        assert rig.command(arm, rig.plant.q[rig.rows(arm)]) is Verdict.REJECTED_LATCHED
        assert rig.limiter.enable(rig.now) is EnableResult.REFUSED_LATCHED
        rig.limiter.disable(rig.now)
        for out in rig.tick(50):
            assert rig.limiter.state is S.ESTOP and rig.weight == 0.0
            assert not out.kp.any() and np.array_equal(out.enabled, rig.limiter.controllable)
    rig.limiter.reset()
    assert not rig.tick()[0].enabled.any() and rig.limiter.state is S.DISABLED
    measured = rig.plant.q.copy()
    assert rig.limiter.enable(rig.now) is EnableResult.RAMPING
    out = rig.tick()[0]
    ctrl = rig.limiter.controllable
    np.testing.assert_array_equal(out.q[ctrl], measured[ctrl])


def test_when_damping_in_arm_sdk_mode_expect_weight_zero_and_legs_never_enabled(joint_table):
    rig = _active_rig(joint_table, mode="arm_sdk")
    legs = np.array([j.group == "leg" for j in joint_table.joints])
    _first_tick_in(rig, S.DAMPING, 2.0)
    for out in rig.tick(20):
        assert rig.weight == 0.0 and not out.enabled[legs].any() and out.enabled[~legs].all()


def test_when_disabled_after_running_expect_damping_with_commands_refused_until_enable(joint_table):
    rig = _active_rig(joint_table)
    arm = _names(joint_table, "left_")
    rig.limiter.disable(rig.now)
    assert rig.limiter.state is S.STOPPED
    assert rig.command(arm, rig.plant.q[rig.rows(arm)]) is Verdict.REJECTED_NOT_ENABLED
    out = rig.tick(100)[-1]
    assert rig.limiter.state is S.STOPPED and rig.weight == 0.0
    assert not out.kp.any() and out.kd[rig.limiter.controllable].all()
    assert rig.limiter.enable(rig.now) is EnableResult.RAMPING


# Effort ---------------------------------------------------------------------------------------
def test_when_an_arm_is_blocked_expect_effort_within_its_limit_and_kp_scaled_not_the_target(joint_table):
    rig = _active_rig(joint_table)
    wrist = joint_table.index("left_wrist_pitch_joint")  # 5 N*m, kp 40: 0.125 rad of error saturates
    rig.plant.pinned[wrist] = True
    name = joint_table.names[wrist]
    outs = []
    for _ in range(30):
        assert rig.command([name], [rig.bounds.upper[wrist]]) is Verdict.ACCEPTED
        for _ in range(10):
            outs += rig.tick()
            effort = motor_effort(rig.out, rig.plant.q, rig.plant.dq)
            assert np.all(np.abs(effort) <= rig.bounds.max_effort * (1 + EPS))
    assert rig.out.q[wrist] - rig.plant.q[wrist] > 0.5  # the target kept going...
    assert rig.out.kp[wrist] < 40.0 * 0.125 / 0.5  # ...and the stiffness gave way
    assert rig.limiter.status(rig.now).clamped["effort"] > 0
    _assert_step_bounded(rig, outs)


def test_when_command_carries_a_huge_feed_forward_expect_tau_within_the_effort_limit(joint_table):
    rig = _active_rig(joint_table)
    arm = _names(joint_table, "left_")
    rows = rig.rows(arm)
    assert rig.command(arm, rig.plant.q[rows], effort=np.full(7, 1e300)) is Verdict.ACCEPTED
    for out in rig.tick(10):
        assert np.all(out.tau[rows] <= rig.bounds.max_effort[rows])
        assert np.all(out.tau[rows] > 0)
    _first_tick_in(rig, S.HOLD, 1.0)
    assert not rig.out.tau.any()  # a stale feed-forward is dropped


def test_when_command_carries_feed_forward_during_the_ramp_expect_it_ramped_too(joint_table):
    rig = _enabled_rig(joint_table, ramp_time=0.2)
    arm = _names(joint_table, "left_")
    rows = rig.rows(arm)[:4]  # shoulders and elbow: 25 N*m, far above the 2 N*m asked
    taus = []
    for _ in range(12):
        assert rig.command(arm, rig.plant.q[rig.rows(arm)], effort=np.full(7, 2.0)) is Verdict.ACCEPTED
        taus += [out.tau[rows] for out in rig.tick(10)]
    taus = np.array(taus)  # tick k of the ramp: alpha = smoothstep(k * PERIOD / 0.2)
    np.testing.assert_allclose(taus[0], 0.0)
    s = 49 * PERIOD / 0.2
    np.testing.assert_allclose(taus[49], 2.0 * s * s * (3 - 2 * s), rtol=1e-9)
    np.testing.assert_allclose(taus[-1], 2.0)


# Interpolation in the loop --------------------------------------------------------------------
def test_when_a_50hz_stream_stays_within_limits_expect_neither_velocity_nor_acceleration_bound_to_act(joint_table):
    rig = _active_rig(joint_table)
    arm = _names(joint_table, "left_")
    rows = rig.rows(arm)
    centre = rig.plant.q[rows].copy()
    before = dict(rig.limiter.status(rig.now).clamped)
    worst = 0.0
    for k in range(150):  # 3 s of a 0.5 Hz, 0.3 rad swing: peak ~0.94 rad/s against 3 rad/s
        t = 0.02 * k
        assert rig.command(arm, centre + 0.3 * np.sin(np.pi * t)) is Verdict.ACCEPTED
        rig.tick(10)
        if k >= 50:  # once the interpolation's schedule has settled (its first target moves slowly)
            lag = np.abs(rig.out.q[rows] - (centre + 0.3 * np.sin(np.pi * (t + 0.02))))
            worst = max(worst, float(lag.max()))
    clamped = rig.limiter.status(rig.now).clamped
    # Peak acceleration 0.3 * pi^2 ~ 3 rad/s^2: inside the bounds, so neither may act.
    assert (clamped["velocity"], clamped["acceleration"]) == (before["velocity"], before["acceleration"])
    # One and a half command intervals behind (the interpolation's B-spline), plus the approach's
    # lag: the stopping distance at the planned deceleration and the easing time's worth.
    peak, decel = 0.3 * np.pi, BRAKING_SHARE * joint_table.column("max_acceleration")[rows].min()
    assert worst < 0.03 * peak + peak**2 / (2 * decel) + peak * EASE_TIME + 1e-3


def test_when_ticks_come_late_and_then_short_expect_a_50hz_stream_within_limits_still_unclamped(joint_table):
    rig = _active_rig(joint_table)
    arm = _names(joint_table, "left_")
    centre = rig.plant.q[rig.rows(arm)].copy()
    before = dict(rig.limiter.status(rig.now).clamped)
    rng = np.random.default_rng(5)
    for k in range(150):
        assert rig.command(arm, centre + 0.3 * np.sin(np.pi * 0.02 * k)) is Verdict.ACCEPTED
        for _ in range(10):
            if rng.random() < 0.05:  # the loop woke late; its next tick keeps the schedule
                late = PERIOD * rng.uniform(0.2, 0.9)
                rig.tick(1, PERIOD + late)
                rig.tick(1, PERIOD - late)
            else:
                rig.tick(1)
    clamped = rig.limiter.status(rig.now).clamped
    assert (clamped["velocity"], clamped["acceleration"]) == (before["velocity"], before["acceleration"])


# Read-outs ------------------------------------------------------------------------------------
def test_when_status_read_expect_counts_ages_and_a_fixed_set_of_keys(joint_table):
    rig = _active_rig(joint_table)
    arm = _names(joint_table, "left_")
    keys = set(rig.limiter.status(rig.now).as_dict())
    accepted = rig.limiter.status(rig.now).accepted
    assert rig.limiter.submit(["tail_joint"], [0.0], None, None, 1e9, rig.now) is Verdict.REJECTED_UNKNOWN_JOINT
    target = rig.plant.q[rig.rows(arm)]
    target[:3] = [9.0, -9.0, 9.0]  # three targets out of range
    assert rig.command(arm, target) is Verdict.ACCEPTED
    rig.tick(5)
    status = rig.limiter.status(rig.now + 0.5)
    d = status.as_dict()
    assert set(d) == keys
    assert d["rejected.rejected_unknown_joint"] == 1 and status.accepted == accepted + 1
    assert d["clamped.position"] == 3
    assert status.since_command == pytest.approx(0.5 + 5 * PERIOD)
    assert status.since_state == pytest.approx(0.5)
    assert d["state"] == "ACTIVE" and d["fault"] == "none" and d["requested_weight"] == 1.0
    fresh = SafetyLimiter(joint_table).status(0.0)
    assert fresh.since_command == math.inf and set(fresh.as_dict()) == keys


def test_when_outputs_returned_expect_read_only_arrays(joint_table):
    rig = _active_rig(joint_table)
    for out in (rig.out, rig.tick()[0]):
        for field in ("q", "dq", "tau", "kp", "kd", "enabled"):
            with pytest.raises(ValueError):
                getattr(out, field)[0] = 1


def test_when_config_built_from_the_bridge_parameters_expect_their_values():
    from dit4dit_policy.config import section_params

    params = section_params("bridge.yaml", "safety_bridge")
    config = SafetyConfig.from_params({**params, "ramp_time": 0.5, "masked_joints": ["waist_yaw_joint"]})
    assert (config.mode, config.masked_joints, config.ramp_time) == ("arm_sdk", ("waist_yaw_joint",), 0.5)
    assert (config.hold_after, config.damp_after, config.state_timeout, config.damping_kd) == (
        params["hold_after"],
        params["damp_after"],
        params["state_timeout"],
        params["damping_kd"],
    )
    with pytest.raises(KeyError, match="control_mode"):
        SafetyConfig.from_params({k: v for k, v in params.items() if k != "control_mode"})
