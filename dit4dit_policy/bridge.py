"""The safety bridge without ROS: limiter + G1 link + the fixed-rate motor loop.

The ROS node only converts messages and parameters; everything that decides what reaches the
motors lives here, so it can be tested against the loopback robot without a ROS graph. The limiter
is the only road to the link: nothing else in this class writes a LowCmd_.

The motor loop runs from `open` to `close` (feeding the limiter's state watchdog), but writes
LowCmd_ only between `activate` and the end of `deactivate`'s damping. The ROS node runs it in a
process of its own (bridge_process.py).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dit4dit_policy.g1 import G1Link, LinkConfig, LowCmd_
from dit4dit_policy.g1.link import StateSample
from dit4dit_policy.joint_table import JointTable
from dit4dit_policy.periodic import PeriodicThread, PeriodStats
from dit4dit_policy.safety import EnableResult, SafetyConfig, SafetyLimiter, SafetyStatus, Verdict


@dataclass(frozen=True)
class LatencyStats:
    """Command received -> the first LowCmd_ written that acted on it, in seconds."""

    count: int
    p50: float
    p99: float
    max: float


class Bridge:
    def __init__(
        self,
        table: JointTable,
        safety: SafetyConfig,
        link: LinkConfig,
        rate_hz: float,
        realtime_priority: int = 0,
    ):
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if not 0 <= realtime_priority <= 99:
            raise ValueError(f"realtime_priority must be in 0..99 (0: ordinary scheduling), got {realtime_priority}")
        self.table = table
        self.limiter = SafetyLimiter(table, safety)
        self.link = G1Link(link, table)
        self._loop = PeriodicThread(1.0 / rate_hz, self._tick, "motor-loop", realtime_priority=realtime_priority)
        self._sending = False
        self._last_state_time = -1.0
        # (received, submitted) of accepted commands not yet written; deque appends and pops are
        # atomic, so the ROS thread and the loop share it without a lock the loop could block on.
        self._pending: deque[tuple[float, float]] = deque()
        self._latencies: deque[float] = deque(maxlen=60_000)
        self.last_cmd: LowCmd_ | None = None

    # Life cycle -------------------------------------------------------------------------------
    def open(self) -> None:
        """Join the robot's DDS domain and start the loop. Nothing is written yet."""
        self.link.connect()
        self._loop.start()

    def activate(self, state_wait: float) -> EnableResult:
        """Start writing, beginning with the start-up ramp from the measured pose.

        Waits up to `state_wait` s for the robot's first LowState: without it there is no pose to
        ramp from, and the limiter refuses.
        """
        self.link.wait_for_state(state_wait)
        self._feed_state()
        result = self.limiter.enable(time.monotonic())
        self._sending = result in (EnableResult.RAMPING, EnableResult.ALREADY_ENABLED)
        return result

    def deactivate(self, damping_time: float) -> None:
        """Hand back through damping (never just stop writing), then stop writing.

        Damps for `damping_time`, and in arm_sdk mode at least until the blend weight is back at 0.
        """
        if not self._sending:
            return
        self.limiter.disable(time.monotonic())
        deadline = time.monotonic() + damping_time
        hard_stop = deadline + 2 * self.link.config.weight_ramp_time
        while self._loop.running and time.monotonic() < hard_stop:
            weight_down = self.link.config.mode != "arm_sdk" or self.link.arm_sdk_weight == 0.0
            if weight_down and time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        self._sending = False

    def close(self) -> None:
        self._loop.stop()
        self.link.close()

    # Inputs -----------------------------------------------------------------------------------
    def command(
        self,
        names: Sequence[str],
        position: np.ndarray,
        velocity: np.ndarray | None,
        effort: np.ndarray | None,
        stamp: float,
    ) -> Verdict:
        received = time.monotonic()
        verdict = self.limiter.submit(names, position, velocity, effort, stamp, received)
        if verdict is Verdict.ACCEPTED:
            self._pending.append((received, time.monotonic()))
        return verdict

    def stop(self) -> None:
        """Hand back at once (damping, no position gains, blend weight ramping to 0) and refuse
        commands until `reset` and `activate`: for an operator moving the robot or the scene."""
        self.limiter.disable(time.monotonic())

    def estop(self) -> None:
        self.limiter.estop()

    def reset(self) -> None:
        """Clear a latched e-stop or fault; the limiter is then disabled until `activate` again."""
        self.limiter.reset()

    # The motor loop ---------------------------------------------------------------------------
    def _feed_state(self) -> StateSample | None:
        sample = self.link.latest_sample()
        if sample is not None and sample.recv_time != self._last_state_time:
            self._last_state_time = sample.recv_time
            self.limiter.update_state(sample.q, sample.dq, sample.recv_time)
        return sample

    def _tick(self, now: float) -> None:
        sample = self._feed_state()
        step_start = time.monotonic()
        # The limiter steps even when not writing: its state watchdog must keep running.
        targets, weight = self.limiter.step(now)
        sent = self._sending and sample is not None  # the link needs the robot's mode_machine first
        if sent:
            self.last_cmd = self.link.send(targets, weight, now)
        wire = time.monotonic()
        # A command whose submit() returned before this step began is in it; one that returned
        # later may not be, and is counted against the next tick (never flattering the figure).
        while self._pending and self._pending[0][1] < step_start:
            received, _ = self._pending.popleft()
            if sent:
                self._latencies.append(wire - received)

    # Read-outs --------------------------------------------------------------------------------
    def latest_sample(self) -> StateSample | None:
        """The robot's latest state as arrays in joint-table order (None before the first)."""
        return self.link.latest_sample()

    def status(self) -> SafetyStatus:
        return self.limiter.status(time.monotonic())

    @property
    def sending(self) -> bool:
        return self._sending

    def period_stats(self) -> PeriodStats:
        return self._loop.stats()

    def latency_stats(self) -> LatencyStats:
        lat = np.array(self._latencies)
        if lat.size == 0:
            return LatencyStats(0, float("nan"), float("nan"), float("nan"))
        return LatencyStats(
            lat.size, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), float(lat.max())
        )

    @property
    def realtime(self) -> bool:
        """Whether the motor loop runs with the real-time priority it asked for."""
        return self._loop.realtime

    @property
    def loop_error(self) -> BaseException | None:
        return self._loop.error
