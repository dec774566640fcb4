"""Helpers shared by the safety tests: hypothesis profiles, an independent oracle of the bounds (read
straight from the joint table, not through dit4dit_policy.safety.limits), a tiny plant and a rig
that ticks a limiter against it. The tests at the bottom check the helpers themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, settings

from dit4dit_policy.joint_table import JointTable
from dit4dit_policy.safety import MotorTargets, SafetyConfig, SafetyLimiter, Verdict

# `safety` keeps the whole safety suite to seconds on two shared cores; select `safety-thorough`
# with SAFETY_HYPOTHESIS_PROFILE=safety-thorough for a long hunt.
settings.register_profile("safety", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "safety-thorough", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SAFETY_SETTINGS = settings.get_profile(os.environ.get("SAFETY_HYPOTHESIS_PROFILE", "safety"))

PERIOD = 0.002  # s, the bridge's 500 Hz tick
EPS = 1e-9  # slack for float rounding in bound checks


@dataclass(frozen=True)
class Bounds:
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray
    max_acceleration: np.ndarray
    max_effort: np.ndarray
    hard_lower: np.ndarray
    hard_upper: np.ndarray


def oracle_bounds(table: JointTable) -> Bounds:
    joints = table.joints
    m = table.soft_margin
    return Bounds(
        lower=np.array([j.limits.min_position + m for j in joints]),
        upper=np.array([j.limits.max_position - m for j in joints]),
        max_velocity=np.array([min(j.limits.max_velocity, table.command_max_velocity[j.group]) for j in joints]),
        max_acceleration=np.array([j.limits.max_acceleration for j in joints]),
        max_effort=np.array([j.limits.max_effort for j in joints]),
        hard_lower=np.array([j.limits.min_position for j in joints]),
        hard_upper=np.array([j.limits.max_position for j in joints]),
    )


def motor_effort(out: MotorTargets, q_meas: np.ndarray, dq_meas: np.ndarray) -> np.ndarray:
    """What the motor applies for this command at this measurement (G1 motor law)."""
    return out.tau + out.kp * (out.q - q_meas) + out.kd * (out.dq - dq_meas)


class Plant:
    """Each joint an inertia driven by the motor law, semi-implicit Euler, stopped at its hard limits.

    A disabled motor applies no torque. `pinned` joints do not move at all (a blocked arm).
    """

    def __init__(self, table: JointTable, q0: np.ndarray, inertia: float = 0.2):
        b = oracle_bounds(table)
        self.lower, self.upper = b.hard_lower, b.hard_upper
        self.q = np.array(q0, dtype=np.float64)
        self.dq = np.zeros_like(self.q)
        self.inertia = inertia
        self.pinned = np.zeros(self.q.shape, dtype=bool)

    def advance(self, out: MotorTargets | None, dt: float) -> None:
        if out is not None:
            torque = np.where(out.enabled, motor_effort(out, self.q, self.dq), 0.0)
            self.dq = np.where(self.pinned, 0.0, self.dq + torque / self.inertia * dt)
        self.q = self.q + self.dq * dt
        stopped = (self.q < self.lower) | (self.q > self.upper)
        self.q = np.clip(self.q, self.lower, self.upper)
        self.dq = np.where(stopped, 0.0, self.dq)


class Rig:
    """A limiter ticking against a plant at a fixed period, with its own clock and command stamps."""

    def __init__(self, table: JointTable, config: SafetyConfig, q0: np.ndarray | None = None):
        self.table = table
        self.limiter = SafetyLimiter(table, config)
        self.bounds = oracle_bounds(table)
        q0 = table.column("default_position") if q0 is None else q0
        self.plant = Plant(table, q0)
        self.now = 0.0
        self.stamp = 0.0
        self.out: MotorTargets | None = None
        self.weight = 0.0
        self.feed_state()

    def feed_state(self) -> Verdict:
        return self.limiter.update_state(self.plant.q, self.plant.dq, self.now)

    def tick(self, n: int = 1, dt: float = PERIOD, states: bool = True) -> list[MotorTargets]:
        """n ticks: the plant moves under the last output, reports (unless `states` is False), then step()."""
        outs = []
        for _ in range(n):
            self.plant.advance(self.out, dt)
            self.now += dt
            if states:
                self.feed_state()
            self.out, self.weight = self.limiter.step(self.now)
            outs.append(self.out)
        return outs

    def command(self, names, position, effort=None, velocity=None) -> Verdict:
        # Stamped when sent, as a sender on the same clock would (the limiter's interpolation
        # takes its segment lengths from the stamps); later than every earlier stamp.
        self.stamp = max(self.now, self.stamp + 1e-6)
        return self.limiter.submit(list(names), position, velocity, effort, self.stamp, self.now)

    def rows(self, names) -> list[int]:
        return [self.table.index(n) for n in names]


def test_when_plant_driven_by_pd_expect_it_settles_on_the_target(joint_table):
    q0 = joint_table.column("default_position")
    plant = Plant(joint_table, q0)
    target = q0 + 0.1
    n = len(q0)
    out = MotorTargets(
        q=target,
        dq=np.zeros(n),
        tau=np.zeros(n),
        kp=joint_table.column("kp"),
        kd=joint_table.column("kd") + 2.0,
        enabled=np.ones(n, dtype=bool),
    )
    for _ in range(3000):
        plant.advance(out, PERIOD)
    np.testing.assert_allclose(plant.q, target, atol=1e-3)


def test_when_plant_motors_disabled_expect_it_coasts(joint_table):
    q0 = joint_table.column("default_position")
    plant = Plant(joint_table, q0)
    n = len(q0)
    out = MotorTargets(
        q=q0 + 1.0, dq=np.zeros(n), tau=np.ones(n), kp=np.ones(n), kd=np.ones(n), enabled=np.zeros(n, bool)
    )
    plant.advance(out, PERIOD)
    np.testing.assert_array_equal(plant.q, q0)


def test_when_plant_pushed_past_hard_limit_expect_it_stops_there(joint_table):
    q0 = joint_table.column("default_position")
    plant = Plant(joint_table, q0)
    plant.dq[:] = 1e4
    plant.advance(None, PERIOD)
    np.testing.assert_array_equal(plant.q, plant.upper)
    np.testing.assert_array_equal(plant.dq, 0.0)


def test_when_oracle_bounds_read_expect_soft_range_inside_hard_range(joint_table):
    b = oracle_bounds(joint_table)
    assert np.all(b.hard_lower < b.lower) and np.all(b.upper < b.hard_upper)
    assert np.all(b.max_velocity <= 3.0)  # every group ceiling in g1_29dof.yaml is <= 3 rad/s
