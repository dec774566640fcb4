"""Approximate time synchronisation of camera frames with joint states, by header stamp.

The camera (~30 Hz) is the slow stream, so it drives: the newest fresh frame is paired with the
joint state nearest to it in time, if that is within `slop`. If the newest frame has no partner
(its joint states are delayed or lost) older fresh frames are tried, newest first, so one dropped
joint message does not stall the policy. This is the nearest-neighbour special case of
message_filters' ApproximateTimeSynchronizer for two topics where one is much faster.

Pure and deterministic: no clock is read; the caller passes `now`.
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
        fresh_joints = joints.stamps[first_joint:newest_joint]
        for f in range(newest_frame - 1, first_frame - 1, -1):
            t = frames.stamps[f]
            j = self._nearest(fresh_joints, t)
            if abs(fresh_joints[j] - t) <= self.slop:
                return Observation(frames.items[f], t, joints.items[first_joint + j], fresh_joints[j])
        return NoObservation(SyncFailure.NO_MATCH_WITHIN_SLOP)

    @staticmethod
    def _nearest(stamps: list[float], t: float) -> int:
        """Index of the stamp nearest t (the earlier one on a tie, for determinism)."""
        i = bisect.bisect_left(stamps, t)
        if i == 0:
            return 0
        if i == len(stamps):
            return i - 1
        return i - 1 if t - stamps[i - 1] <= stamps[i] - t else i
