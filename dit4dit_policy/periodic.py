"""A fixed-rate loop on its own thread, with the period error it actually achieved.

rclpy timers share the executor with every subscription callback, so a 500 Hz motor loop on one
jitters by whole callbacks. This thread sleeps to just before each absolute deadline and spins the
rest of the way; deadlines never drift, and a late tick is counted as missed rather than
silently shifting the schedule.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The last stretch before each deadline is busy-waited to beat the scheduler's wake-up jitter.
# bench/bench_periodic.py (500 Hz beside two busy processes): under SCHED_FIFO, 0.1 ms gives the
# same p99 error as 0.4 ms (0.2 us; 63 us without spinning) at a quarter of the CPU (5 % of a core
# against 20 %, taken from inference on a small machine); without SCHED_FIFO preemption dominates
# (p99 0.8-2 ms) whatever the spin. The loop's own process may still make it wait for the
# interpreter lock (up to the switch interval below) after it wakes: not measured by that bench.
SPIN_S = 0.0001
# CPython hands the GIL to a waiting thread only every switch interval (5 ms by default), which
# would let any busy thread delay a tick by that much.
_GIL_SWITCH_S = 0.0002


def make_realtime(priority: int) -> bool:
    """Give the calling thread SCHED_FIFO `priority` (0: leave it alone). True if granted.

    A loop preempted by ordinary processes misses deadlines by whole scheduler slices; SCHED_FIFO
    (as ros2_control uses) fixes that where the process may have it (root, CAP_SYS_NICE or an
    rtprio limit). Threads created afterwards by this thread inherit the policy.
    """
    if priority <= 0:
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError):
        return False
    return True


def make_process_realtime(priority: int) -> bool:
    """Give every thread of this process SCHED_FIFO `priority` (0: leave them alone); threads
    created afterwards inherit it from their creator. True if all of them got it.

    For a process whose every thread is on a real-time path, like a ROS node's executor and the
    DDS threads that `rclpy.init` started, which it cannot name one by one.
    """
    if priority <= 0:
        return False
    granted = True
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(priority))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
        except (PermissionError, OSError):
            granted = False
    return granted


@dataclass(frozen=True)
class PeriodStats:
    """Period error of the ticks so far: |actual interval - period|, in seconds."""

    ticks: int
    missed: int
    p50: float
    p99: float
    max: float


class PeriodicThread:
    """Calls `fn(now)` every `period` seconds (monotonic clock) until stopped; the last `spin`
    seconds before each deadline are busy-waited."""

    def __init__(
        self,
        period: float,
        fn: Callable[[float], None],
        name: str,
        history: int = 60_000,
        realtime_priority: int = 0,
        spin: float = SPIN_S,
    ):
        if not period > 0:
            raise ValueError(f"period must be > 0, got {period}")
        if not 0 <= spin < period:
            raise ValueError(f"spin must be in [0, period), got {spin}")
        self.period = period
        self.spin = spin
        self._fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._intervals = np.zeros(history)
        self._count = 0
        self._missed = 0
        self.error: BaseException | None = None
        self.realtime_priority = realtime_priority
        self.realtime = False  # whether SCHED_FIFO was granted

    def start(self) -> None:
        if sys.getswitchinterval() > _GIL_SWITCH_S:
            sys.setswitchinterval(_GIL_SWITCH_S)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        self.realtime = make_realtime(self.realtime_priority)
        deadline = time.monotonic()
        last = None
        try:
            while not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining > self.spin:
                    time.sleep(remaining - self.spin)
                while time.monotonic() < deadline:
                    pass
                now = time.monotonic()
                if last is not None:
                    self._intervals[self._count % len(self._intervals)] = now - last
                    self._count += 1
                last = now
                self._fn(now)
                deadline += self.period
                behind = time.monotonic() - deadline
                if behind >= self.period:
                    # A whole period lost: skip those deadlines rather than fire a burst to catch
                    # up. A tick less than a period late just runs late (counted as period error).
                    skipped = int(behind // self.period)
                    self._missed += skipped
                    deadline += skipped * self.period
        except BaseException as e:  # surfaced to the owner, which must treat it as a fault
            self.error = e
            raise

    def stats(self) -> PeriodStats:
        n = min(self._count, len(self._intervals))
        if n == 0:
            return PeriodStats(0, self._missed, float("nan"), float("nan"), float("nan"))
        err = np.abs(self._intervals[:n] - self.period)
        return PeriodStats(
            ticks=self._count,
            missed=self._missed,
            p50=float(np.percentile(err, 50)),
            p99=float(np.percentile(err, 99)),
            max=float(err.max()),
        )
