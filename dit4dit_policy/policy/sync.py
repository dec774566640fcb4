"""Approximate time synchronisation of camera frames with joint states, by header stamp.

The camera (~30 Hz) is the slow stream, so it drives: the newest fresh frame is paired with the
joint state nearest to it in time, if that is within `slop`. If the newest frame has no partner
(its joint states are delayed or lost) older fresh frames are tried, newest first, so one dropped
joint message does not stall the policy. This is the nearest-neighbour special case of
message_filters' ApproximateTimeSynchronizer for two topics where one is much faster.

Pure and deterministic: no clock is read; the caller passes `now`.

The same rules, applied to whole recorded streams at once, turn a recording into training rows
(`align_recording`), so that a dataset pairs frames and joint states exactly as the node does:
`stamp_order` (the buffers' order and replace rule), `nearest_indices` and `pair_within_slop`
(the pairing `StampSync.latest` itself runs), and `interpolate` (the chunk executor's linear
interpolation between targets).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

# How far ahead of the node's clock a stamp may be and still count (clock skew between machines
# on one robot LAN, kept small by NTP/PTP): seconds.
FUTURE_TOLERANCE = 0.05


class SyncFailure(StrEnum):
    NO_FRAME = "no_frame"
    NO_JOINTS = "no_joints"
    STALE_FRAME = "stale_frame"  # none within [now - max_frame_age, now + FUTURE_TOLERANCE]
    STALE_JOINTS = "stale_joints"
    NO_MATCH_WITHIN_SLOP = "no_match_within_slop"


@dataclass(frozen=True)
class Observation:
    frame: Any  # whatever the node stores (an image array); the core never looks inside
    frame_stamp: float
    joints: np.ndarray
    joint_stamp: float


@dataclass(frozen=True)
class NoObservation:
    reason: SyncFailure


class _StampedBuffer:
    """At most `capacity` (stamp, item) pairs kept sorted by stamp; a repeated stamp replaces."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self.stamps: list[float] = []
        self.items: list[Any] = []

    def clear(self) -> None:
        self.stamps.clear()
        self.items.clear()

    def add(self, stamp: float, item: Any) -> None:
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            self.items[i] = item
            return
        self.stamps.insert(i, stamp)
        self.items.insert(i, item)
        if len(self.stamps) > self._capacity:
            del self.stamps[0], self.items[0]

    def newest(self) -> float | None:
        return self.stamps[-1] if self.stamps else None


def _check_stamp(stamp: float, what: str) -> float:
    stamp = float(stamp)
    if not math.isfinite(stamp):
        raise ValueError(f"{what} stamp must be finite, got {stamp}")
    return stamp


class StampSync:
    def __init__(self, slop: float, max_frame_age: float, max_joint_age: float, buffer_size: int):
        self.slop = slop
        self.max_frame_age = max_frame_age
        self.max_joint_age = max_joint_age
        self._frames = _StampedBuffer(buffer_size)
        self._joints = _StampedBuffer(buffer_size)

    def add_frame(self, frame: Any, stamp: float) -> None:
        self._frames.add(_check_stamp(stamp, "frame"), frame)

    def add_joints(self, joints: np.ndarray, stamp: float) -> None:
        joints = np.asarray(joints, dtype=np.float64)
        if joints.ndim != 1 or not np.all(np.isfinite(joints)):
            raise ValueError(f"joints must be a finite 1-D array, got shape {joints.shape}: {joints}")
        self._joints.add(_check_stamp(stamp, "joint state"), joints)

    def clear(self) -> None:
        self._frames.clear()
        self._joints.clear()

    def newest_stamps(self) -> tuple[float | None, float | None]:
        """(newest frame stamp, newest joint state stamp), None where none arrived yet."""
        return self._frames.newest(), self._joints.newest()

    def latest(self, now: float) -> Observation | NoObservation:
        frames, joints = self._frames, self._joints
        if not frames.stamps:
            return NoObservation(SyncFailure.NO_FRAME)
        if not joints.stamps:
            return NoObservation(SyncFailure.NO_JOINTS)
        # Fresh means now - max_age <= stamp <= now + FUTURE_TOLERANCE; the sorted buffers make
        # that a slice. A stamp from the future is not fresh: a sender whose clock runs ahead
        # would otherwise keep a dead stream "fresh" for as long as its clock is ahead.
        newest_frame = bisect.bisect_right(frames.stamps, now + FUTURE_TOLERANCE)
        first_frame = bisect.bisect_left(frames.stamps, now - self.max_frame_age, hi=newest_frame)
        if first_frame == newest_frame:
            return NoObservation(SyncFailure.STALE_FRAME)
        newest_joint = bisect.bisect_right(joints.stamps, now + FUTURE_TOLERANCE)
        first_joint = bisect.bisect_left(joints.stamps, now - self.max_joint_age, hi=newest_joint)
        if first_joint == newest_joint:
            return NoObservation(SyncFailure.STALE_JOINTS)
        fresh_frames = frames.stamps[first_frame:newest_frame]
        fresh_joints = joints.stamps[first_joint:newest_joint]
        partners = pair_within_slop(fresh_frames, fresh_joints, self.slop)
        matched = np.flatnonzero(partners >= 0)
        if matched.size == 0:
            return NoObservation(SyncFailure.NO_MATCH_WITHIN_SLOP)
        f, j = int(matched[-1]), int(partners[matched[-1]])  # the newest frame with a partner
        frame, joint = frames.items[first_frame + f], joints.items[first_joint + j]
        return Observation(frame, fresh_frames[f], joint, fresh_joints[j])


def nearest_indices(stamps: Any, targets: Any) -> np.ndarray:
    """For each target time, the index of the nearest of the ascending `stamps` (the earlier one on
    a tie, for determinism)."""
    s = np.asarray(stamps, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"stamps must be a non-empty 1-D sequence, got shape {s.shape}")
    i = np.searchsorted(s, t, side="left")
    before = np.maximum(i - 1, 0)
    after = np.minimum(i, s.size - 1)
    take_before = (i == s.size) | ((i > 0) & (t - s[before] <= s[after] - t))
    return np.where(take_before, before, after)


def pair_within_slop(frame_stamps: Any, joint_stamps: Any, slop: float) -> np.ndarray:
    """For each frame, the index of the nearest joint state if it is within `slop` of the frame,
    else -1. Both stamp sequences ascending."""
    frames = np.asarray(frame_stamps, dtype=np.float64)
    joints = np.asarray(joint_stamps, dtype=np.float64)
    nearest = nearest_indices(joints, frames)
    return np.where(np.abs(joints[nearest] - frames) <= slop, nearest, -1)


def stamp_order(stamps: Any) -> np.ndarray:
    """Indices that put a recorded stream (in arrival order) in stamp order, keeping only the last
    arrival of a repeated stamp: what the node's buffers hold after receiving the same stream."""
    s = np.asarray(stamps, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"stamps must be 1-D, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"stamps must be finite; first bad one at arrival {int(np.flatnonzero(~np.isfinite(s))[0])}")
    order = np.argsort(s, kind="stable")  # stable: equal stamps stay in arrival order
    ordered = s[order]
    last_of_run = np.append(ordered[1:] != ordered[:-1], True)
    return order[last_of_run]


def interpolate(stamps: Any, values: Any, times: Any) -> np.ndarray:
    """Values [N, D] given at ascending unique `stamps`, at `times`: linear in between (a + f (b - a),
    exact where a == b), as the bridge's interpolator runs a command stream; the first value before
    the first stamp and the last after the last (where the chunk executor agrees)."""
    s = np.asarray(stamps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or v.ndim != 2 or v.shape[0] != s.size:
        raise ValueError(f"need stamps [N] and values [N, D] with N >= 1, got {s.shape} and {v.shape}")
    if np.any(np.diff(s) <= 0):
        raise ValueError("stamps must be strictly increasing")
    if s.size == 1:
        return np.repeat(v, t.size, axis=0)
    i = np.clip(np.searchsorted(s, t, side="right") - 1, 0, s.size - 2)
    f = np.clip((t - s[i]) / (s[i + 1] - s[i]), 0.0, 1.0)[:, None]
    return v[i] + f * (v[i + 1] - v[i])


@dataclass(frozen=True)
class Alignment:
    """Row k of a dataset at `rate`: the frame `frames[k]`, the joint state `joints[k]` and the
    action at `action_times[k]` (indices into the stamp-ordered streams)."""

    times: np.ndarray  # [K] grid times, 1 / rate apart, starting on a frame stamp
    frames: np.ndarray  # [K] the frame nearest each grid time
    joints: np.ndarray  # [K] the joint state paired with that frame, as StampSync pairs them
    action_times: np.ndarray  # [K] times + 1 / rate: when the row's action is the target


class AlignmentGap(ValueError):
    """A recording has a stretch where the node would have held: no joint state pairs with a frame."""


def align_recording(
    frame_stamps: Any,
    joint_stamps: Any,
    command_stamps: Any,
    rate: float,
    slop: float,
) -> Alignment:
    """Resample a recording (stamp-ordered, duplicate-free streams) onto a grid of `rate` Hz.

    Each row pairs the frame nearest its grid time with the joint state nearest that frame within
    `slop` (the node's rule). Its action is the commanded target at one period later, interpolated
    linearly: the chunk executor runs action k of a chunk inferred from an observation at t_obs at
    t_obs + (k + 1) / rate, so row k's action is the command for the next row's time, and rows
    k..k+H-1 form exactly the chunk the model is asked for at row k. The grid starts on the first
    frame from which all streams cover a row and ends where one of them stops. ValueError when a
    grid time has no frame within half a period (a camera gap), a frame no joint state within
    `slop` (both AlignmentGap: the node would have held there), or no row fits.
    """
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be a positive number of Hz, got {rate!r}")
    if not math.isfinite(slop) or slop < 0:
        raise ValueError(f"slop must be a finite number >= 0, got {slop!r}")
    streams = {}
    for name, stamps in (("camera", frame_stamps), ("joint state", joint_stamps), ("command", command_stamps)):
        s = np.asarray(stamps, dtype=np.float64)
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"the {name} stream is empty")
        if np.any(np.diff(s) <= 0) or not np.all(np.isfinite(s)):
            raise ValueError(f"{name} stamps must be finite and strictly increasing (see stamp_order)")
        streams[name] = s
    frames, joints, commands = streams["camera"], streams["joint state"], streams["command"]
    period = 1.0 / rate
    lower = max(joints[0] - slop, commands[0] - period)
    upper = min(frames[-1] + period / 2, joints[-1] + slop, commands[-1] - period)
    first = int(np.searchsorted(frames, lower, side="left"))
    if first == frames.size or frames[first] > upper:
        raise ValueError(
            f"no row fits: camera {frames[0]:.3f}..{frames[-1]:.3f} s, joint states {joints[0]:.3f}.."
            f"{joints[-1]:.3f} s, commands {commands[0]:.3f}..{commands[-1]:.3f} s"
        )
    t0 = frames[first]
    count = int(math.floor((upper - t0) * rate)) + 1
    times = t0 + np.arange(count) / rate
    frame_idx = nearest_indices(frames, times)
    gap = np.abs(frames[frame_idx] - times) > period / 2
    if np.any(gap):
        k = int(np.flatnonzero(gap)[0])
        raise AlignmentGap(
            f"camera gap: no frame within {period / 2:.3f} s of {times[k]:.3f} s (row {k}); nearest at "
            f"{frames[frame_idx[k]]:.3f} s"
        )
    joint_idx = pair_within_slop(frames[frame_idx], joints, slop)
    unpaired = joint_idx < 0
    if np.any(unpaired):
        k = int(np.flatnonzero(unpaired)[0])
        raise AlignmentGap(
            f"no joint state within slop {slop} s of the frame at {frames[frame_idx[k]]:.3f} s (row {k})"
        )
    return Alignment(times=times, frames=frame_idx, joints=joint_idx, action_times=times + period)
