"""The safety limiter between any policy and the G1's motors (pure Python + numpy, no ROS, no DDS)."""

from dit4dit_policy.safety.interpolation import CommandInterpolator
from dit4dit_policy.safety.limiter import (
    CONTROL_GROUPS,
    EnableResult,
    Fault,
    MotorTargets,
    SafetyConfig,
    SafetyLimiter,
    SafetyState,
    SafetyStatus,
    Verdict,
    controllable_mask,
)
from dit4dit_policy.safety.limits import LimitSnapshot

__all__ = [
    "CONTROL_GROUPS",
    "CommandInterpolator",
    "EnableResult",
    "Fault",
    "LimitSnapshot",
    "MotorTargets",
    "SafetyConfig",
    "SafetyLimiter",
    "SafetyState",
    "SafetyStatus",
    "Verdict",
    "controllable_mask",
]
