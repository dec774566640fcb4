"""What reaches the motors: the safety limiter's output and the G1 link's input (pure numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MotorTargets:
    """One motor command per joint of the JointTable, in table order.

    Per joint the motor applies tau + kp*(q - q_meas) + kd*(dq - dq_meas).
    """

    q: np.ndarray  # rad
    dq: np.ndarray  # rad/s
    tau: np.ndarray  # N*m feed-forward
    kp: np.ndarray
    kd: np.ndarray
    enabled: np.ndarray  # bool; False: the motor slot is written with mode 0 and zeros

    @classmethod
    def zeros(cls, n: int, enabled: bool = False) -> MotorTargets:
        """All-zero targets; with enabled=True that is zero torque (mode 1, kp = kd = tau = 0)."""
        return cls(*(np.zeros(n) for _ in range(5)), enabled=np.full(n, enabled))
