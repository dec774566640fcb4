"""Sparse command targets (10-50 Hz) to a per-tick reference (500 Hz) by linear interpolation."""

from __future__ import annotations

import numpy as np


class CommandInterpolator:
    """A reference that moves linearly to each new target over the interval observed between targets.

    Each segment starts where the reference is when the target arrives (so an early target never
    makes it jump) and ends exactly on the target, where it stays: it never extrapolates. The
    segment length is the time since the previous target, clamped to [min_interval, max_interval]
    so that a burst cannot divide by ~0 and a target after a gap is not crawled toward; the first
    target after reset() uses max_interval.
    """

    def __init__(self, size: int, max_interval: float, min_interval: float = 1e-3):
        if not 0 < min_interval <= max_interval < np.inf:
            raise ValueError(f"need 0 < min_interval <= max_interval < inf, got {min_interval} and {max_interval}")
        self.min_interval = float(min_interval)
        self.max_interval = float(max_interval)
        self._start = np.zeros(size)
        self._end = np.zeros(size)
        self._t0 = 0.0
        self._duration = self.max_interval
        self._t_end = self._t0 + self._duration
        self._last_arrival: float | None = None

    def reset(self, value: np.ndarray) -> None:
        """Rest at `value` with no target history."""
        self._start = np.array(value, dtype=np.float64)
        self._end = self._start.copy()
        self._last_arrival = None

    def push(self, target: np.ndarray, now: float) -> None:
        """A new target arrived at `now`."""
        target = np.array(target, dtype=np.float64)
        if target.shape != self._end.shape:
            raise ValueError(f"target shape {target.shape} != {self._end.shape}")
        start = self.sample(now)
        if self._last_arrival is None:
            duration = self.max_interval
        else:
            duration = min(max(now - self._last_arrival, self.min_interval), self.max_interval)
        self._start, self._end = start, target
        self._t0, self._duration, self._last_arrival = now, duration, now
        self._t_end = now + duration

    def sample(self, now: float) -> np.ndarray:
        """The reference at `now` (a new array)."""
        if now >= self._t_end:
            return self._end.copy()
        fraction = (now - self._t0) / self._duration
        if not fraction > 0.0:  # also a NaN time: stay at a value that was actually commanded
            return self._start.copy()
        return self._start + min(fraction, 1.0) * (self._end - self._start)
