"""Hypothesis: arbitrary, hostile event streams never get an unsafe output past the limiter.

Streams mix commands (NaN, inf, huge values, wrong lengths, unknown, duplicate and uncontrollable
names, out-of-order stamps, bursts), ticks with jittered and late periods, LowState dropouts and
broken states, pushes on the plant, enable/disable, e-stops, resets and a clock going backwards.
After every step() the outputs are checked against the oracle bounds and every state is checked
against its deadlines, which pins each transition to the first tick past its deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_safety_helpers import EPS, SAFETY_SETTINGS, Plant, motor_effort, oracle_bounds

from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.safety import EnableResult, SafetyConfig, SafetyLimiter, SafetyState, Verdict

S = SafetyState
POSITION = {S.RAMP, S.ACTIVE, S.HOLD}
COMMANDING = POSITION | {S.DAMPING, S.STOPPED}
# Short deadlines so that a few hundred ticks visit every state.
TIMING = {"ramp_time": 0.06, "hold_after": 0.03, "damp_after": 0.08, "state_timeout": 0.015, "max_tick": 0.01}

# Events -----------------------------------------------------------------------------------------
# Bulk values come from a seeded generator: drawing hundreds of floats one by one through
# hypothesis would cost more than running the limiter on them.
seeds = st.integers(0, 2**32 - 1)


@dataclass(frozen=True)
class Command:
    picks: tuple[int, ...]  # indices into the controllable names (mod their number), de-duplicated
    flaw: str | None
    seed: int  # positions uniform in [-4, 4] rad: often outside a joint's range
    velocity: float | None  # the same for every named joint
    effort: float | None
    poison: float | None  # written into position, velocity or effort
    poison_field: int
    stamp_step: float  # <= 0: a stale stamp


commands = st.builds(
    Command,
    picks=st.lists(st.integers(0, 1000), min_size=1, max_size=8).map(tuple),
    flaw=st.sampled_from([None] * 6 + ["unknown", "uncontrollable", "duplicate", "short", "empty"]),
    seed=seeds,
    velocity=st.none() | st.floats(-4.0, 4.0),
    effort=st.none() | st.floats(-200.0, 200.0),
    poison=st.sampled_from([None, None, None, math.nan, math.inf, -math.inf, 1e300, -1e300]),
    poison_field=st.integers(0, 2),
    stamp_step=st.sampled_from([0.02, 0.02, 0.02, 1e-9, 0.0, -0.5]),
)
# n ticks of a base period +-50% (on their own never near state_timeout)
ticks = st.tuples(st.integers(1, 60), st.floats(0.0005, 0.006), seeds)

# Listed twice: drawn twice as often as the latching faults, so streams get somewhere.
events = st.one_of(
    st.tuples(st.just("ticks"), ticks),
    st.tuples(st.just("ticks"), ticks),
    st.tuples(st.just("late_tick"), st.floats(0.006, 0.1)),
    st.tuples(st.just("command"), commands),
    st.tuples(st.just("command"), commands),
    st.tuples(st.just("stream"), st.integers(1, 12), st.floats(-2.0, 2.0)),  # well-formed, 50 Hz
    st.tuples(st.just("stream"), st.integers(1, 12), st.floats(-2.0, 2.0)),
    st.tuples(st.just("burst"), st.lists(commands, min_size=2, max_size=6)),
    st.tuples(st.just("dropout"), ticks),
    st.tuples(st.just("bad_state"), st.sampled_from(["nan", "inf", "huge", "short", "older"])),
    st.tuples(st.just("push"), seeds),
    st.tuples(st.sampled_from(["enable", "disable", "estop", "reset", "recover", "clock_back"])),
)


def tick_lengths(spec) -> np.ndarray:
    n, base, seed = spec
    return base * np.random.default_rng(seed).uniform(0.5, 1.5, n)


# Harness ----------------------------------------------------------------------------------------
class Harness:
    """Runs events against a limiter and a plant, checking every output and state."""

    def __init__(self, table, config: SafetyConfig):
        self.cfg = config
        self.lim = SafetyLimiter(table, config)
        self.b = oracle_bounds(table)
        self.n = len(table.joints)
        groups = {"arm_sdk": {"arm", "waist"}, "lowcmd": {"leg", "waist", "arm", "hand"}}[config.mode]
        self.ctrl = np.array([j.group in groups and j.name not in config.masked_joints for j in table.joints])
        self.ctrl_names = [n for n, c in zip(table.names, self.ctrl, strict=True) if c]
        self.other_names = [n for n, c in zip(table.names, self.ctrl, strict=True) if not c]
        self.plant = Plant(table, table.column("default_position"))
        self.now, self.stamp, self.last_stamp = 0.0, 0.0, -math.inf
        self.out, self.prev_q, self.prev_now, self.prev_state = None, None, None, S.DISABLED
        self.q_meas = self.dq_meas = None  # the limiter's view: the last accepted state
        self.t_state = -math.inf
        self.base = -math.inf  # watchdog base: last accepted command or (re)start of the ramp
        self.restart_pose = None  # clipped measured pose at a (re)start of the ramp, before its first tick
        self.fault_cause = False
        self.estopped = False
        self.rejections = 0

    # Inputs
    def feed(self, q, dq, t) -> None:
        verdict = self.lim.update_state(q, dq, t)
        if verdict is Verdict.ACCEPTED:
            self.q_meas, self.dq_meas, self.t_state = np.array(q), np.array(dq), t
        elif verdict is not Verdict.REJECTED_STALE_STAMP:
            self.fault_cause = True

    def tick(self, dt: float, states: bool = True) -> None:
        self.plant.advance(self.out, dt)
        self.now += dt
        if states:
            self.feed(self.plant.q.copy(), self.plant.dq.copy(), self.now)
        before = self.lim.state
        if before in COMMANDING and not self.now - self.t_state <= self.cfg.state_timeout:
            self.fault_cause = True
        self.out, weight = self.lim.step(self.now)
        self.check(before, weight)
        self.prev_now, self.prev_state, self.restart_pose = self.now, self.lim.state, None

    def acceptable(self, names, position, velocity, effort, stamp) -> bool:
        """Independent oracle of what submit() may accept."""
        arrays = [a for a in (position, velocity, effort) if a is not None]
        return (
            len(names) > 0
            and len(set(names)) == len(names)
            and all(n in self.ctrl_names for n in names)
            and all(len(a) == len(names) for a in arrays)
            and all(math.isfinite(x) for a in arrays for x in a)
            and stamp > self.last_stamp
            and self.lim.state in {S.RAMP, S.ACTIVE, S.HOLD, S.DAMPING}
        )

    def submit(self, names, position, velocity, effort, stamp) -> Verdict:
        before = self.lim.state
        acceptable = self.acceptable(names, position, velocity, effort, stamp)
        verdict = self.lim.submit(names, position, velocity, effort, stamp, self.now)
        assert (verdict is Verdict.ACCEPTED) == acceptable, verdict
        if verdict is Verdict.ACCEPTED:
            self.base, self.last_stamp = self.now, stamp
            if before is S.DAMPING:
                self._restarted()
        else:
            self.rejections += 1
        return verdict

    def command(self, c: Command) -> None:
        names = list(dict.fromkeys(self.ctrl_names[p % len(self.ctrl_names)] for p in c.picks))
        k = len(names)
        arrays = [list(np.random.default_rng(c.seed).uniform(-4.0, 4.0, k))]
        arrays += [None if v is None else [v] * k for v in (c.velocity, c.effort)]
        if c.poison is not None and arrays[c.poison_field] is not None:
            arrays[c.poison_field][0] = c.poison
        if c.flaw == "unknown":
            names[-1] = "tail_joint"
        elif c.flaw == "uncontrollable" and self.other_names:
            names[-1] = self.other_names[c.picks[0] % len(self.other_names)]
        elif c.flaw == "duplicate" and k > 1:
            names[-1] = names[0]
        elif c.flaw == "short":
            arrays[0] = arrays[0][:-1]
        elif c.flaw == "empty":
            names, arrays = [], [[], None, None]
        stamp = self.stamp + c.stamp_step
        if self.submit(names, *arrays, stamp) is Verdict.ACCEPTED:
            self.stamp = stamp

    def stream(self, rounds: int, offset: float) -> None:
        """A well-behaved policy: the controllable joints, a slowly moving target, every 20 ms."""
        rows = np.flatnonzero(self.ctrl)
        centre = self.plant.q[rows].copy()
        for r in range(rounds):
            self.stamp += 0.02
            target = centre + offset * math.sin(0.3 * r)
            self.submit(self.ctrl_names, target, None, None, self.stamp)
            for _ in range(10):
                self.tick(0.002)

    def _restarted(self) -> None:
        self.base = self.now
        self.restart_pose = np.clip(self.q_meas, self.b.lower, self.b.upper)

    def apply(self, event) -> None:
        kind = event[0]
        if kind == "ticks":
            for dt in tick_lengths(event[1]):
                self.tick(dt)
        elif kind == "late_tick":
            self.tick(event[1])
        elif kind == "command":
            self.command(event[1])
        elif kind == "stream":
            self.stream(event[1], event[2])
        elif kind == "burst":
            for c in event[1]:
                self.command(c)
        elif kind == "dropout":
            for dt in tick_lengths(event[1]):
                self.tick(dt, states=False)
        elif kind == "bad_state":
            self.bad_state(event[1])
        elif kind == "push":
            frac = np.random.default_rng(event[1]).uniform(0.0, 1.0, self.n)
            self.plant.q = self.b.hard_lower + frac * (self.b.hard_upper - self.b.hard_lower)
        elif kind == "enable":
            if self.lim.enable(self.now) is EnableResult.RAMPING:
                self._restarted()
        elif kind == "disable":
            self.lim.disable(self.now)
        elif kind == "estop":
            self.lim.estop()
            self.estopped = True
        elif kind == "reset":
            self.lim.reset()
            self.estopped = self.fault_cause = False
        elif kind == "recover":
            for step in (("reset",), ("ticks", (1, 0.002, 0)), ("enable",)):
                self.apply(step)
        elif kind == "clock_back":
            self.fault_cause = True
            self.out, weight = self.lim.step(self.now - 0.001)
            assert self.lim.state is (S.ESTOP if self.estopped else S.FAULT)
            self.check_output(self.lim.state, weight)

    def bad_state(self, how: str) -> None:
        q, dq = self.plant.q.copy(), self.plant.dq.copy()
        t = self.now + 1e-4
        if how == "nan":
            q[0] = math.nan
        elif how == "inf":
            dq[-1] = -math.inf
        elif how == "huge":
            dq[3] = 1e12
        elif how == "short":
            q = q[:-2]
        else:
            t = self.t_state - 0.001  # older than the latest accepted: ignored, no fault
        self.feed(q, dq, t)

    # Checks
    def check_output(self, state: SafetyState, weight: float) -> None:
        out, b = self.out, self.b
        for field in ("q", "dq", "tau", "kp", "kd"):
            assert np.all(np.isfinite(getattr(out, field))), field
        assert np.all((b.lower <= out.q) & (out.q <= b.upper)), "position outside the soft range"
        assert not np.any(out.enabled & ~self.ctrl), "an uncontrollable joint enabled"
        off = ~self.ctrl
        assert not (out.kp[off].any() or out.kd[off].any() or out.tau[off].any()), "gains on an uncontrollable joint"
        assert np.all(out.kp >= 0) and np.all(out.kd >= 0)
        if state is S.DISABLED:
            assert not out.enabled.any() and weight == 0.0
        else:
            assert np.array_equal(out.enabled, self.ctrl)
        assert weight == (1.0 if state in POSITION else 0.0)
        if state not in POSITION:
            assert not out.kp.any() and not out.tau.any()
        if self.q_meas is not None:
            effort = motor_effort(out, self.q_meas, self.dq_meas)
            assert np.all(np.abs(effort) <= b.max_effort * (1 + EPS) + EPS), "effort over the limit"
            assert np.all(np.abs(out.tau) <= b.max_effort)

    def check(self, before: SafetyState, weight: float) -> None:
        state, cfg, now = self.lim.state, self.cfg, self.now
        self.check_output(state, weight)
        if state in POSITION:
            if self.restart_pose is not None:
                np.testing.assert_array_equal(self.out.q[self.ctrl], self.restart_pose[self.ctrl])
            elif self.prev_state in POSITION:
                step = np.abs(self.out.q - self.prev_q)
                assert np.all(step <= self.b.max_velocity * (now - self.prev_now) + EPS), "step too large"
        self.prev_q = self.out.q
        # Deadlines: each state only while its condition holds, so each change is on the first tick
        # past its deadline - never before, never a tick later.
        age, state_age = now - self.base, now - self.t_state
        if state in COMMANDING:
            assert state_age <= cfg.state_timeout, f"{state} with a LowState {state_age:.4f} s old"
        if state in (S.RAMP, S.ACTIVE):
            assert age <= cfg.hold_after, f"{state} {age:.4f} s after the last command"
        if state is S.HOLD:
            assert cfg.hold_after < age <= cfg.damp_after, f"HOLD {age:.4f} s after the last command"
        if state is S.DAMPING:
            assert age > cfg.damp_after, f"DAMPING only {age:.4f} s after the last command"
        assert (state is S.ESTOP) == self.estopped
        if state is S.FAULT:
            assert self.fault_cause, "FAULT without a cause"
        if before in (S.ESTOP, S.FAULT):
            assert state is before, "a latch released without reset()"
        if before is S.DISABLED:
            assert state in (S.DISABLED, S.FAULT)


CONFIGS = [
    ("g1_29dof", SafetyConfig(mode="arm_sdk", **TIMING)),
    (
        "g1_29dof",
        SafetyConfig(mode="lowcmd", masked_joints=("left_knee_joint", "right_wrist_yaw_joint"), **TIMING),
    ),
    ("g1_23dof", SafetyConfig(mode="lowcmd", **TIMING)),
]


@pytest.mark.parametrize(("variant", "config"), CONFIGS, ids=["arm_sdk", "lowcmd_masked", "lowcmd_23dof"])
@SAFETY_SETTINGS
@given(st.lists(events, min_size=5, max_size=40))
def test_when_any_hostile_event_stream_expect_every_output_safe_and_every_transition_on_time(variant, config, stream):
    h = Harness(load_joint_table(variant), config)
    h.tick(0.002)
    h.apply(("enable",))
    for event in stream:
        h.apply(event)
    h.tick(0.002)
    assert sum(h.lim.status(h.now).rejected.values()) == h.rejections


@SAFETY_SETTINGS
@given(st.lists(st.tuples(st.just("ticks"), ticks) | st.tuples(st.just("command"), commands), max_size=30))
def test_when_commands_keep_coming_expect_no_rejected_one_to_reach_the_motors(stream):
    """Rejected commands leave no trace: a twin limiter fed only the accepted ones gives identical outputs."""
    table = load_joint_table()
    h = Harness(table, SafetyConfig(**TIMING))
    twin = Harness(table, SafetyConfig(**TIMING))
    for x in (h, twin):
        x.tick(0.002)
        x.apply(("enable",))
    accepted = []
    real_submit = h.lim.submit

    def recording_submit(*args):
        verdict = real_submit(*args)
        if verdict is Verdict.ACCEPTED:
            accepted.append(args)
        return verdict

    h.lim.submit = recording_submit
    for event in stream:
        if event[0] == "ticks":
            for dt in tick_lengths(event[1]):
                h.tick(dt)
                twin.tick(dt)
                for f in ("q", "dq", "tau", "kp", "kd", "enabled"):
                    np.testing.assert_array_equal(getattr(h.out, f), getattr(twin.out, f))
        else:
            h.command(event[1])
            for args in accepted:
                assert twin.submit(*args[:5]) is Verdict.ACCEPTED
            accepted.clear()
