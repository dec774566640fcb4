"""Settings of the policy core, validated once at construction so the hot path never re-checks them.

All times are in seconds, in the clock of the message header stamps (the node's ROS clock); only
inference latency is a duration measured on the monotonic clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class PolicyConfig:
    # Largest |frame stamp - joint state stamp| that still pairs them into one observation.
    slop: float = 0.02
    # A camera frame older than this (relative to `now`) is never used.
    max_frame_age: float = 0.2
    # A joint state older than this is never used; the bridge publishes at 100 Hz.
    max_joint_age: float = 0.1
    # Messages kept per stream for matching; older ones are dropped first.
    buffer_size: int = 32
    # Rate (Hz) at which the node asks for a target.
    control_rate_hz: float = 50.0
    # Time between consecutive actions of a chunk; must match the training data's action rate.
    action_period: float = 0.1
    # Crossfade from the executing trajectory to a newly arrived chunk takes this long, or this
    # many times the chunk's delay (arrival - observation stamp) if that is longer (0: never longer).
    # 0.3 s rather than 0.2: the demo's commands were a quarter less rough (acceleration RMS) at the
    # same touch time (docs/BENCHMARKS.md).
    blend_time: float = 0.3
    blend_per_delay: float = 2.0
    # Past the end of the newest chunk the last action is held this long, then the chunker is
    # exhausted and nothing is published (the bridge watchdog takes over).
    hold_time: float = 0.2
    # An inference slower than this counts as an overrun.
    latency_budget: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "buffer_size":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"PolicyConfig.buffer_size must be an int >= 1, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"PolicyConfig.{f.name} must be a finite number, got {value!r}")
            # slop, hold_time and blend_per_delay may be 0 (exact stamps only, no hold, a fixed
            # crossfade); everything else must be > 0.
            may_be_zero = f.name in ("slop", "hold_time", "blend_per_delay")
            if value < 0 or (value == 0 and not may_be_zero):
                bound = ">= 0" if may_be_zero else "> 0"
                raise ValueError(f"PolicyConfig.{f.name} must be {bound}, got {value!r}")

    @property
    def control_period(self) -> float:
        return 1.0 / self.control_rate_hz

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PolicyConfig:
        """From a parameter mapping (the YAML's keys); unknown keys are errors, missing ones default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PolicyConfig keys {unknown}; known: {sorted(known)}")
        return cls(**dict(data))
