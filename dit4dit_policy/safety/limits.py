"""Pure limit functions, one per quantity, on per-joint numpy arrays.

Motion is limited in steps (rad per control tick) rather than in velocities: a step that is inside
every bound comes back bit for bit. limit_motion turns the velocity and acceleration limits into
per-tick bounds from the tick lengths it is given. Inputs must be finite; the limiter rejects
non-finite commands and states before they reach these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dit4dit_policy.joint_table import JointTable


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class LimitSnapshot:
    """The bounds the limiter enforces, read-only, taken once from the joint table."""

    lower: np.ndarray  # rad, min_position + soft_margin
    upper: np.ndarray  # rad, max_position - soft_margin
    max_velocity: np.ndarray  # rad/s, min(hardware, group ceiling) for commanded targets
    max_acceleration: np.ndarray  # rad/s^2
    max_effort: np.ndarray  # N*m, bound on tau + kp*(q - q_meas) + kd*(dq - dq_meas)

    @classmethod
    def from_table(cls, table: JointTable) -> LimitSnapshot:
        """Snapshot of `table`; a joint whose table entry switches a bound off is refused, never passed."""
        for j in table.joints:
            lim = j.limits
            off = [
                name
                for name, on in (
                    ("position", lim.has_position_limits),
                    ("velocity", lim.has_velocity_limits),
                    ("acceleration", lim.has_acceleration_limits),
                    ("effort", lim.has_effort_limits),
                )
                if not on
            ]
            if off:
                raise ValueError(f"joint {j.name} has {'/'.join(off)} limits switched off; the limiter needs all")
        margin = table.soft_margin
        return cls(
            lower=_frozen(table.column("min_position") + margin),
            upper=_frozen(table.column("max_position") - margin),
            max_velocity=_frozen(table.command_velocity_limits()),
            max_acceleration=_frozen(table.column("max_acceleration")),
            max_effort=_frozen(table.column("max_effort")),
        )


def clamp_position(q: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """q clipped into [lower, upper]."""
    return np.minimum(np.maximum(q, lower), upper)


def limit_velocity(step: np.ndarray, max_step: np.ndarray) -> np.ndarray:
    """A per-tick step clipped to [-max_step, max_step]."""
    return np.minimum(np.maximum(step, -max_step), max_step)


def limit_acceleration(step: np.ndarray, step_prev: np.ndarray, accel_step: np.ndarray) -> np.ndarray:
    """A step clipped to within accel_step of step_prev (the previous velocity times this tick's dt)."""
    return np.minimum(np.maximum(step, step_prev - accel_step), step_prev + accel_step)


def stopping_distance(step: np.ndarray, accel_step: np.ndarray) -> np.ndarray:
    """Distance covered from a step of `step` to rest, decelerating by accel_step per tick (>= 0)."""
    s = np.abs(step)
    return s * (s / accel_step + 1.0) / 2.0


def approach_step(error: np.ndarray, accel_step: np.ndarray, ease_ticks: float | np.ndarray) -> np.ndarray:
    """The step toward a goal `error` away, on a braking curve that eases into the goal.

    In velocities the curve is v(d) = sqrt(2 a d + (a tau)^2) - a tau (a = accel_step / dt^2, tau =
    ease_ticks * dt): far from the goal the braking speed at deceleration a, near it d / tau, a
    first-order approach with time constant tau. Along it the deceleration never exceeds a, so the
    output never overshoots a goal that stands still, and a moving goal is followed with a lag of
    its stopping distance plus v * tau, never ahead of it.

    ease_ticks = 1/2 is the discrete braking curve (from a step of n * accel_step the output stops
    on the goal in n ticks, see stopping_distance), which reaches the goal still at speed: a goal
    that turns back toward a lagging output, as at every reversal, then asks for a reversal within
    one tick. A longer tau turns the last stretch into a first-order follow, whose acceleration is
    about the goal's own; and a tau fixed in seconds asks for the same speed whatever this tick's
    length, where a tick cut short after a late one otherwise asks for a jump. A goal within one
    accel_step is taken whole, so the output comes to rest exactly on it: a last step a little
    faster than the curve's (by less than accel_step), then rest. The step is at most d * dt / tau,
    so with ticks no longer than tau it never passes a goal that stands still.
    """
    distance = np.abs(error)
    lead = accel_step * ease_ticks
    step = np.sqrt(2.0 * accel_step * distance + lead * lead) - lead
    step = np.where(distance <= accel_step, distance, np.minimum(step, distance))
    return np.copysign(step, error)


# Share of the acceleration bound the approach to a goal plans its braking with (see limit_motion).
# Halving it doubles the output's lag behind a moving goal (its stopping distance: 0.02 rad at
# 1 rad/s against 50 rad/s^2; on the demo's commands 7 mrad p50, 20 mrad p99). Measured on 8 of the
# demo's episodes (commands inside the limits), replayed through the interpolation with 4 ms of
# delivery jitter: planned at the full bound the limiter clipped 188 joint-ticks, at 3/4 none, at
# half none.
BRAKING_SHARE = 0.5
# The approach's time constant near the goal (s; see approach_step).
EASE_TIME = 0.01


class Motion(NamedTuple):
    q: np.ndarray  # next output position
    step: np.ndarray  # q - q_prev
    position_clamps: int  # joints whose output hit the position range
    velocity_clamps: int  # joints whose step the velocity bound cut
    acceleration_clamps: int  # joints whose step the acceleration bound cut


def limit_motion(
    goal: np.ndarray,
    q_prev: np.ndarray,
    v_prev: np.ndarray,
    dt: float,
    dt_prev: float,
    lower: np.ndarray,
    upper: np.ndarray,
    max_velocity: np.ndarray,
    max_acceleration: np.ndarray,
) -> Motion:
    """One tick of length dt from q_prev (moving at v_prev over the previous tick, of length
    dt_prev) toward goal. Later bounds win: position > velocity > acceleration.

    The approach brakes as if at BRAKING_SHARE of the acceleration bound, which the bound then
    enforces in full: the difference is room for the goal's own changes of speed. Planned at the
    full bound, the approach leaves none, and the bound clips the output wherever a moving goal
    slows or turns - on the demo's command stream, on smooth stretches well inside the limits.

    The change of velocity is bounded over the time between the two ticks' midpoints, (dt_prev +
    dt) / 2, the acceleration's own interval: bounded over dt alone, a tick cut short after a late
    one (the loop keeps its schedule) would allow only a fraction of the acceleration actually
    available between them, and clip the speed change the late tick had started.
    """
    wanted = approach_step(
        clamp_position(goal, lower, upper) - q_prev,
        BRAKING_SHARE * max_acceleration * (dt * dt),
        EASE_TIME / dt,
    )
    accel_limited = limit_acceleration(wanted, v_prev * dt, max_acceleration * (dt * (dt_prev + dt) / 2.0))
    step = limit_velocity(accel_limited, max_velocity * dt)
    unclamped = q_prev + step
    q = clamp_position(unclamped, lower, upper)
    return Motion(
        q=q,
        step=q - q_prev,
        position_clamps=int(np.count_nonzero(q != unclamped)),
        velocity_clamps=int(np.count_nonzero(step != accel_limited)),
        acceleration_clamps=int(np.count_nonzero(accel_limited != wanted)),
    )


class Effort(NamedTuple):
    tau: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    clamps: int  # joints where any of tau, kp, kd was reduced


def _give_back(term: np.ndarray, sign: np.ndarray, excess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`term` cut toward zero by up to `excess` where it pushes with `sign`; the excess still left."""
    cut = np.minimum(excess, np.maximum(sign * term, 0.0))
    return term - sign * cut, excess - cut


def _scaled(gain: np.ndarray, bounded: np.ndarray, term: np.ndarray) -> np.ndarray:
    """gain * bounded/term (a ratio in [0, 1]); unchanged where the term is zero."""
    return gain * np.divide(bounded, term, out=np.ones_like(term), where=term != 0)


def bound_effort(
    q: np.ndarray,
    dq: np.ndarray,
    tau: np.ndarray,
    kp: np.ndarray,
    kd: np.ndarray,
    q_meas: np.ndarray,
    dq_meas: np.ndarray,
    max_effort: np.ndarray,
) -> Effort:
    """tau, kp, kd reduced so that |tau + kp*(q - q_meas) + kd*(dq - dq_meas)| <= max_effort.

    tau is first clipped to +-max_effort on its own, so the bound still holds when the motor's own
    fresher measurement makes the PD terms vanish. A total still over the bound is cut in the terms
    pushing the same way as the total, each at most to zero, in this order: the feed-forward torque
    (the policy's unverified part), the spring (kp scaled down), the damper (kd scaled down, last
    because damping is what the hold-off states rely on). Scaling kp rather than pulling q toward
    q_meas gives the same torque at this measurement but keeps q on its velocity- and
    acceleration-bounded path, and a glitchy measurement cannot drag the target along.
    """
    tau_b = np.minimum(np.maximum(tau, -max_effort), max_effort)
    spring = kp * (q - q_meas)
    damper = kd * (dq - dq_meas)
    total = tau_b + spring + damper
    excess = np.abs(total) - max_effort
    if not (excess > 0).any():
        return Effort(tau=tau_b, kp=kp, kd=kd, clamps=int(np.count_nonzero(tau_b != tau)))
    sign = np.sign(total)
    tau_b, excess = _give_back(tau_b, sign, np.maximum(excess, 0.0))
    spring_b, excess = _give_back(spring, sign, excess)
    damper_b, _ = _give_back(damper, sign, excess)
    kp_b = _scaled(kp, spring_b, spring)
    kd_b = _scaled(kd, damper_b, damper)
    changed = (tau_b != tau) | (kp_b != kp) | (kd_b != kd)
    return Effort(tau=tau_b, kp=kp_b, kd=kd_b, clamps=int(np.count_nonzero(changed)))
