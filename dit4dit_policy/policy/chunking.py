"""Executes action chunks at the control rate, crossfading each new chunk in (RTC-style, no jumps).

Time convention: a chunk inferred from an observation stamped `t_obs` with action period `dt`
holds actions a_0 .. a_{H-1}; a_k is the target for time t_obs + (k + 1) * dt (the observation
shows the present pose; the first action is the next one). Between action times the target follows
a cubic through the actions with Catmull-Rom tangents (the mean of the neighbouring slopes; one-sided
at the ends), so its velocity does not jump at each action as a linear interpolation's does, which
the bridge's acceleration limit would have to clip; the cubic's slope stays within 1.5x the largest
slope between actions. Before a_0's time the target is a_0, after a_{H-1}'s it is a_{H-1}.

Blending: inference takes time, so a chunk arrives (at `now`) with its first actions already in
the past; those are simply never sampled, as the chunk is read at the current time. The executing
trajectory T (the blend of all earlier chunks) is crossfaded into the new chunk C over
`blend_time`: target(t) = T(t) + w(t) (C(t) - T(t)), w = smoothstep((t - arrival) / blend_time).
At arrival w = 0 and w' = 0, so the target and its velocity are exactly what they would have been
without the new chunk (chunks arrive every inference, and each would otherwise bend the command by
its offset / blend_time); a control tick of length h changes the target by at most
max(|T'|, |C'|) h + 1.5 |C - T| h / blend_time. A chunk that comes late (its delay d = arrival -
observation stamp) crossfades over max(blend_time, blend_per_delay * d) instead: the policy and the
robot form a feedback loop through that delay, and correcting a delayed chunk's offset in less
time than the delay makes the loop oscillate (measured on the demo: with inference starved to
p50 ~120 ms, 0.2 s crossfades swung the elbow 0.3-0.5 rad at ~3 Hz, beyond the bridge's limits;
with inference slowed by a fixed 120 ms, 35 commanded samples beyond the limits with 0.2 s, none
with twice the delay). A chunk
arriving mid-crossfade crossfades from the blend in progress; earlier chunks are dropped once a
later crossfade completes. This is the crossfade half of pi0.5's real-time chunking, without its
inpainting guidance: pinning each chunk's first actions to what the robot executes of them anyway,
in the default checkpoint's 4-step sampler it was not trained for, made the commands rougher
(docs/BENCHMARKS.md, 2026-11-25).

Past the newest chunk's last action its value is held for `hold_time`; after that `target` reports
EXHAUSTED until a new chunk arrives, which then crossfades from the held value, i.e. from where the
bridge's watchdog left the robot's command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from dit4dit_policy.easing import smoothstep
from dit4dit_policy.policy.sync import FUTURE_TOLERANCE


class Unavailable(StrEnum):
    NO_CHUNK = "no_chunk"
    EXHAUSTED = "exhausted"


class AddResult(StrEnum):
    ACCEPTED = "accepted"
    # Its last action's time had passed on arrival: nothing of it could be executed.
    EXPIRED = "expired"
    # Its observation is not newer than the newest chunk's: a newer chunk already superseded it.
    OUT_OF_ORDER = "out_of_order"
    # Its observation is stamped ahead of now (a clock jump, or a result from before a reset):
    # executing it would hold its first action until that time comes.
    FROM_FUTURE = "from_future"


def check_chunk(chunk: np.ndarray) -> np.ndarray:
    """The chunk as float64 [H, D], H, D >= 1, all finite; ValueError naming what is wrong."""
    actions = np.asarray(chunk, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] < 1:
        raise ValueError(f"chunk must be [H, D] with H, D >= 1, got shape {actions.shape}")
    if not np.all(np.isfinite(actions)):
        bad = np.argwhere(~np.isfinite(actions))[0]
        raise ValueError(f"chunk has non-finite actions (first at action {bad[0]}, joint {bad[1]})")
    return actions


@dataclass(frozen=True)
class _Chunk:
    actions: np.ndarray  # [H, D]
    obs_stamp: float
    first_time: float  # time of actions[0]
    arrival: float  # start of its crossfade
    blend: float  # length of its crossfade

    def end_time(self, dt: float) -> float:
        return self.first_time + (len(self.actions) - 1) * dt

    def sample(self, t: float, dt: float) -> np.ndarray:
        a = self.actions
        u = min(max((t - self.first_time) / dt, 0.0), len(a) - 1.0)
        i = int(math.floor(u))
        if i >= len(a) - 1:
            return a[-1]
        f = u - i
        # Tangents (per action step) from the neighbours, one-sided at the chunk's ends.
        m0 = (a[i + 1] - a[max(i - 1, 0)]) / (2.0 if i > 0 else 1.0)
        m1 = (a[min(i + 2, len(a) - 1)] - a[i]) / (2.0 if i + 2 < len(a) else 1.0)
        # Hermite form written as a + ...: exact when the actions around are equal (constants stay constant).
        step = a[i + 1] - a[i]
        return a[i] + (f * f * (3.0 - 2.0 * f)) * step + (f * (f - 1.0) ** 2) * m0 + (f * f * (f - 1.0)) * m1


class ChunkBlender:
    """Not thread-safe: one caller (the control tick). `now` must never decrease."""

    def __init__(self, action_period: float, blend_time: float, hold_time: float, blend_per_delay: float = 0.0):
        if not (action_period > 0 and blend_time > 0 and hold_time >= 0 and blend_per_delay >= 0):
            raise ValueError(
                f"need action_period > 0, blend_time > 0, hold_time >= 0, blend_per_delay >= 0; "
                f"got {action_period}, {blend_time}, {hold_time}, {blend_per_delay}"
            )
        self.action_period = action_period
        self.blend_time = blend_time
        self.hold_time = hold_time
        self.blend_per_delay = blend_per_delay
        self._chunks: list[_Chunk] = []  # oldest first; [0] is the base, the rest crossfade in
        self._last_now = -math.inf

    def reset(self) -> None:
        self._chunks.clear()
        self._last_now = -math.inf

    @property
    def newest_obs_stamp(self) -> float | None:
        return self._chunks[-1].obs_stamp if self._chunks else None

    def add(self, chunk: np.ndarray, obs_stamp: float, now: float) -> AddResult:
        """Start crossfading to `chunk` (inferred from the observation at `obs_stamp`) at `now`."""
        self._advance(now)
        actions = check_chunk(chunk)
        if self._chunks and actions.shape[1] != self._chunks[-1].actions.shape[1]:
            raise ValueError(f"chunk has {actions.shape[1]} joints, earlier chunks {self._chunks[-1].actions.shape[1]}")
        if not math.isfinite(obs_stamp):
            raise ValueError(f"obs_stamp must be finite, got {obs_stamp}")
        if obs_stamp > now + FUTURE_TOLERANCE:
            return AddResult.FROM_FUTURE
        if self._chunks and obs_stamp <= self._chunks[-1].obs_stamp:
            return AddResult.OUT_OF_ORDER
        blend = max(self.blend_time, self.blend_per_delay * (now - obs_stamp))
        new = _Chunk(actions, obs_stamp, obs_stamp + self.action_period, now, blend)
        if now > new.end_time(self.action_period):
            return AddResult.EXPIRED
        self._chunks.append(new)
        return AddResult.ACCEPTED

    def target(self, now: float) -> np.ndarray | Unavailable:
        """The joint target for the control tick at `now` (a new array), or why there is none."""
        self._advance(now)
        if not self._chunks:
            return Unavailable.NO_CHUNK
        if now > self._chunks[-1].end_time(self.action_period) + self.hold_time:
            return Unavailable.EXHAUSTED
        # Drop everything before the newest chunk whose crossfade is complete: from then on the
        # blend equals that chunk exactly, and time never goes back.
        for k in range(len(self._chunks) - 1, 0, -1):
            if now - self._chunks[k].arrival >= self._chunks[k].blend:
                del self._chunks[:k]
                break
        dt = self.action_period
        x = self._chunks[0].sample(now, dt).copy()
        for c in self._chunks[1:]:
            x += smoothstep((now - c.arrival) / c.blend) * (c.sample(now, dt) - x)
        return x

    def _advance(self, now: float) -> None:
        if not math.isfinite(now) or now < self._last_now:
            raise ValueError(f"now must be finite and never decrease: got {now} after {self._last_now}")
        self._last_now = now
