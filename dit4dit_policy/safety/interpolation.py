"""Sparse command targets (10-50 Hz) to a per-tick reference (500 Hz) whose velocity does not jump.

A reference that moved linearly from target to target would turn its velocity at each target
within one 2 ms tick: at 50 Hz, a stream accelerating at only 5 rad/s^2 already asks the limiter's
50 rad/s^2 bound for more at every target, and the limiter clips it. This reference is a quadratic
B-spline of the targets instead: at a steady rate its velocity is the targets' first difference
over the interval and its acceleration their second difference over the interval squared, so a
stream inside the limits at its own rate gives a reference inside them too. The price is half an
interval of delay (10 ms at 50 Hz) over linear interpolation.
"""

from __future__ import annotations

import numpy as np

# How far each waypoint is pulled from the sender's schedule toward one interval after its target's
# arrival: delivery jitter bends the reference by this share of what timing by arrival would, and
# a schedule that runs ahead (the first target after a reset moves over max_interval) comes back
# to one interval within a few dozen targets.
SCHEDULE_PULL = 0.1


class CommandInterpolator:
    """Each target P (the previous one P') defines a waypoint: the midpoint (P' + P) / 2, passed at
    the velocity (P - P') / T, T being the interval between the two targets' stamps. On arrival of
    P the reference bends (a cubic) from where it is, at the velocity it has, into that waypoint;
    from there it goes on in a line to P, reached half an interval later, and rests on P: it never
    extrapolates. At a steady rate these pieces are exactly the quadratic B-spline of the targets.

    Waypoints keep the sender's schedule: each is due one stamp interval after the previous one,
    not one interval after its target happened to arrive, so jitter in delivery neither bends the
    reference nor changes its speed (it only has to stay within half an interval: the bend takes
    between T / 2 and 3 T / 2). The velocity steps only where the line ends on P (the stream
    stopped, or its next target came more than T / 2 late); a target that finds the reference at
    rest on P' starts a new schedule. Per joint the reference stays within the range of where it
    was on arrival and the last two targets, so it is never past any value commanded.

    T is clamped to [min_interval, max_interval] so that a burst cannot divide by ~0 and a target
    after a gap is not crawled toward; the first target after reset() uses max_interval.

    `late` counts targets that found the reference at rest although their stamp was within
    max_interval of the previous one: delivered half an interval or more behind the sender's
    schedule, so the reference stopped and must catch up (what a stalled transport looks like).
    """

    def __init__(self, size: int, max_interval: float, min_interval: float = 1e-3):
        if not 0 < min_interval <= max_interval < np.inf:
            raise ValueError(f"need 0 < min_interval <= max_interval < inf, got {min_interval} and {max_interval}")
        self.min_interval = float(min_interval)
        self.max_interval = float(max_interval)
        self.late = 0
        self.reset(np.zeros(size))

    def reset(self, value: np.ndarray) -> None:
        """Rest at `value` with no target history."""
        value = np.array(value, dtype=np.float64)
        zero = np.zeros_like(value)
        # The bend from (p0, v0) at t0 into (mid, v_mid) at t_mid, the line on to `end` at t_end.
        self._p0, self._v0, self._mid, self._v_mid, self._end = value, zero, value.copy(), zero, value.copy()
        self._t0 = self._t_mid = self._t_end = -np.inf
        self._low, self._high = value.copy(), value.copy()
        self._last_stamp: float | None = None

    @property
    def has_target(self) -> bool:
        """Whether a target came since reset()."""
        return self._last_stamp is not None

    def push(self, target: np.ndarray, now: float, stamp: float) -> None:
        """A new target, stamped `stamp` by its sender, arrived at `now`."""
        target = np.array(target, dtype=np.float64)
        if target.shape != self._end.shape:
            raise ValueError(f"target shape {target.shape} != {self._end.shape}")
        interval = np.nan if self._last_stamp is None else stamp - self._last_stamp
        period = min(max(interval, self.min_interval), self.max_interval) if interval > 0 else self.max_interval
        moving = now < self._t_end
        if not moving and interval <= self.max_interval:  # False for NaN: no previous target
            self.late += 1
        self._p0, self._v0 = self._state(now)
        if moving:
            due = self._t_mid + period - now  # on the sender's schedule
            due += SCHEDULE_PULL * (period - due)
            bend = min(max(due, period / 2.0), 1.5 * period)
        else:
            bend = period
        self._mid, self._v_mid = (self._end + target) / 2.0, (target - self._end) / period
        self._low = np.minimum(np.minimum(self._p0, self._end), target)
        self._high = np.maximum(np.maximum(self._p0, self._end), target)
        self._end = target
        self._t0, self._t_mid, self._t_end = now, now + bend, now + bend + period / 2.0
        self._last_stamp = stamp

    def sample(self, now: float) -> np.ndarray:
        """The reference at `now` (a new array)."""
        return self._state(now)[0]

    def _state(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity at `now`."""
        if now >= self._t_end:
            return self._end.copy(), np.zeros_like(self._end)
        if not now >= self._t0:  # also a NaN time: stay at a value that was actually reached
            return self._p0.copy(), np.zeros_like(self._p0)
        if now < self._t_mid:
            h = self._t_mid - self._t0
            s = (now - self._t0) / h
            # Cubic Hermite in powers of s: q = p0 + h v0 s + b s^2 + c s^3.
            d = self._mid - self._p0
            b = 3.0 * d - h * (2.0 * self._v0 + self._v_mid)
            c = h * (self._v0 + self._v_mid) - 2.0 * d
            q = self._p0 + s * (h * self._v0 + s * (b + s * c))
            v = self._v0 + s * (2.0 * b + 3.0 * s * c) / h
        else:
            q = self._mid + (now - self._t_mid) * self._v_mid
            v = self._v_mid.copy()
        clipped = np.clip(q, self._low, self._high)
        return clipped, np.where(clipped == q, v, 0.0)
