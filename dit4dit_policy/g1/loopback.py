"""A stand-in G1 on DDS for tests and dry runs: publishes LowState_, executes LowCmd_ crudely.

The DDS side (rt/lowstate out with a valid CRC and an IMU at rest, CRC-checked rt/lowcmd and
rt/arm_sdk in, the built-in hold and the arm_sdk blend) is robot_side.RobotOnDds, shared with the
MuJoCo simulator (dit4dit_policy.sim). What is the loopback's own is its plant, deliberately crude:
every joint is a unit inertia with viscous friction and no gravity, driven by
tau + kp*(q_t - q) + kd*(dq_t - dq) clamped to the table's max_effort, with velocity and position
clamped to the table's limits, integrated over the wall-clock time between ticks. The built-in
hold keeps the table's default pose with the table's gains.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time

import numpy as np

from dit4dit_policy.g1.robot_side import Reading, RobotOnDds, RobotStats
from dit4dit_policy.joint_table import DEFAULT_VARIANT, JointTable, load_joint_table

FRICTION = 2.0  # N*m*s/rad viscous friction, so lightly damped PD gains settle in ~a second
MAX_STEP = 0.05  # s; a stalled loop integrates at most this much at once

LoopbackStats = RobotStats  # the name the g1 package exports


class LoopbackRobot(RobotOnDds):
    """The stand-in robot; run it with start()/stop() or as a context manager."""

    thread_name = "loopback_robot"

    def __init__(
        self,
        domain_id: int = 0,
        network_interface: str = "",
        rate_hz: float = 500.0,
        mode_machine: int = 5,
        table: JointTable | None = None,
    ) -> None:
        table = table if table is not None else load_joint_table()
        super().__init__(domain_id, network_interface, rate_hz, mode_machine, table)
        self._max_velocity = table.column("max_velocity")
        self._q_min = table.column("min_position")
        self._q_max = table.column("max_position")
        self._q = self.mixer.hold_q.copy()
        self._dq = np.zeros(len(table.joints))
        self._tau = np.zeros(len(table.joints))
        self._last: float | None = None

    def joint_positions(self) -> np.ndarray:
        """Current joint positions in table order."""
        with self._cond:
            return self._q.copy()

    def _advance(self, now: float) -> None:
        dt = 0.0 if self._last is None else min(now - self._last, MAX_STEP)
        self._last = now
        q, dq = self._q, self._dq
        tau = self.mixer.law.effort(q, dq)  # no gravity here: the built-in hold needs no bias
        new_dq = np.clip(dq + (tau - FRICTION * dq) * dt, -self._max_velocity, self._max_velocity)
        new_q = q + new_dq * dt
        at_stop = (new_q < self._q_min) | (new_q > self._q_max)
        with self._cond:
            self._q = np.clip(new_q, self._q_min, self._q_max)
            self._dq = np.where(at_stop, 0.0, new_dq)
            self._tau = tau

    def _reading(self) -> Reading:
        return Reading(q=self._q, dq=self._dq, tau=self._tau)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="loopback_robot",
        description="A stand-in Unitree G1 on DDS (rt/lowstate out, rt/lowcmd + rt/arm_sdk in).",
    )
    parser.add_argument("--domain", type=int, default=0, help="DDS domain id (robot: 0; simulators: 1)")
    parser.add_argument(
        "--interface", default="", help="network interface to pin, e.g. lo; default: Cyclone's choice"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="LowState_ rate in Hz")
    parser.add_argument(
        "--mode-machine", type=int, default=5, help="mode_machine to report (robot variant id)"
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="seconds to run; 0 = until SIGINT/SIGTERM"
    )
    parser.add_argument("--variant", default=DEFAULT_VARIANT, help="joint table variant")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        table = load_joint_table(args.variant)
        robot = LoopbackRobot(args.domain, args.interface, args.rate, args.mode_machine, table).start()
    except (ValueError, RuntimeError) as e:
        parser.error(str(e))
    started = time.monotonic()
    print(
        f"loopback_robot: domain {args.domain}, interface {args.interface or '(default)'}, "
        f"{args.rate:g} Hz, mode_machine {args.mode_machine}, variant {args.variant}",
        flush=True,
    )
    try:
        while not stop.wait(0.2):
            if args.duration > 0 and time.monotonic() - started >= args.duration:
                break
    finally:
        robot.stop()
    s = robot.stats()
    print(
        f"loopback_robot: ran {time.monotonic() - started:.1f} s; published {s.states_published} LowState_; "
        f"accepted {s.accepted_lowcmd} rt/lowcmd and {s.accepted_arm_sdk} rt/arm_sdk; "
        f"dropped {s.dropped_bad_crc} with a bad CRC and {s.dropped_malformed} malformed",
        flush=True,
    )
    return 0
