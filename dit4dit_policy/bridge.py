"""The safety bridge without ROS: limiter + G1 link + the fixed-rate motor loop.

The ROS node only converts messages and parameters; everything that decides what reaches the
motors lives here, so it can be tested against the loopback robot without a ROS graph. The limiter
is the only road to the link: nothing else in this class writes a LowCmd_.
"""

from __future__ import annotations

import threading
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
        self.rate_hz = rate_hz
        self.realtime_priority = realtime_priority
        self.limiter = SafetyLimiter(table, safety)
        self.link = G1Link(link, table)
        self._lock = threading.Lock()  # guards the latency bookkeeping shared with command()
        self._loop: PeriodicThread | None = None
        self._last_state_time = -1.0
        self._pending_since: float | None = None
        self._latencies: deque[float] = deque(maxlen=60_000)
        self.last_cmd: LowCmd_ | None = None

    # Life cycle -------------------------------------------------------------------------------
    def open(self) -> None:
        self.link.connect()

    def start(self, state_wait: float) -> EnableResult:
        """Start the motor loop and the start-up ramp from the measured pose.

        Waits up to `state_wait` s for the robot's first LowState: without it there is no pose to
        ramp from, and the limiter refuses.
        """
        if self._loop is None or not self._loop.running:
            self.link.wait_for_state(state_wait)
            self._feed_state()
            self._loop = PeriodicThread(
                1.0 / self.rate_hz, self._tick, "dit4dit-motor-loop", realtime_priority=self.realtime_priority
            )
            self._loop.start()
        return self.limiter.enable(time.monotonic())

    def damp_and_stop(self, damping_time: float) -> None:
        """Hand back through damping (never just stop writing), then stop the loop.

        Damps for `damping_time`, and in arm_sdk mode at least until the blend weight is back at 0.
        """
        if self._loop is None:
            return
        self.limiter.disable(time.monotonic())
        deadline = time.monotonic() + damping_time
        hard_stop = deadline + 2 * self.link.config.weight_ramp_time
        while self._loop.running and time.monotonic() < hard_stop:
            weight_down = self.link.config.mode != "arm_sdk" or self.link.arm_sdk_weight == 0.0
            if weight_down and time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        self._loop.stop()
        self._loop = None

    def close(self) -> None:
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
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
        now = time.monotonic()
        verdict = self.limiter.submit(names, position, velocity, effort, stamp, now)
        if verdict is Verdict.ACCEPTED:
            with self._lock:
                if self._pending_since is None:
                    self._pending_since = now
        return verdict

    def estop(self) -> None:
        self.limiter.estop()

    def reset(self) -> None:
        """Clear a latched e-stop or fault; the limiter is then disabled until `start` again."""
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
        with self._lock:
            pending, self._pending_since = self._pending_since, None
        # The limiter steps even without a LowState: its state watchdog must keep running.
        targets, weight = self.limiter.step(now)
        if sample is None:
            return  # the link cannot send before it knows the robot's mode_machine
        self.last_cmd = self.link.send(targets, weight, now)
        if pending is not None:
            self._latencies.append(time.monotonic() - pending)

    # Read-outs --------------------------------------------------------------------------------
    def status(self) -> SafetyStatus:
        return self.limiter.status(time.monotonic())

    def period_stats(self) -> PeriodStats | None:
        return self._loop.stats() if self._loop is not None else None

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
        return self._loop is not None and self._loop.realtime

    @property
    def loop_error(self) -> BaseException | None:
        return self._loop.error if self._loop is not None else None
