"""PeriodicThread: fixed deadlines, a late tick's lost periods counted (not burst through), errors surfaced."""

from __future__ import annotations

import threading
import time

import pytest

from dit4dit_policy.periodic import PeriodicThread

PERIOD = 0.01


def test_when_period_or_spin_out_of_range_expect_an_error_naming_it():
    with pytest.raises(ValueError, match="period must be > 0"):
        PeriodicThread(0.0, lambda now: None, "t")
    with pytest.raises(ValueError, match=r"spin must be in \[0, period\)"):
        PeriodicThread(PERIOD, lambda now: None, "t", spin=PERIOD)
    with pytest.raises(ValueError, match=r"spin must be in \[0, period\)"):
        PeriodicThread(PERIOD, lambda now: None, "t", spin=-1e-4)


def test_when_a_tick_overruns_several_periods_expect_them_counted_missed_and_no_burst_after():
    period = 0.05
    times: list[float] = []
    done = threading.Event()

    def tick(now: float) -> None:
        times.append(now)
        if len(times) == 3:
            time.sleep(3.2 * period)  # the next three deadlines pass: two skipped, one run late
        if len(times) == 8:
            done.set()

    loop = PeriodicThread(period, tick, "t")
    loop.start()
    assert done.wait(5.0)
    loop.stop()
    assert loop.stats().missed >= 2
    # Catching up would fire the passed deadlines back to back (microseconds apart); skipping
    # them resumes the grid: the late tick, 0.8 period later the next, then whole periods. (The
    # gap right after the late tick shrinks by however late the sleep woke: not asserted.)
    gaps = [b - a for a, b in zip(times[4:7], times[5:8], strict=True)]
    assert min(gaps) > 0.2 * period, gaps


# The loop re-raises on its own thread (so the error is not silent either); pytest reports that.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_when_the_function_raises_expect_the_error_kept_and_the_loop_ended():
    def tick(now: float) -> None:
        raise RuntimeError("motor write failed")

    loop = PeriodicThread(PERIOD, tick, "t")
    loop.start()
    deadline = time.monotonic() + 5.0
    while loop.running and time.monotonic() < deadline:
        time.sleep(PERIOD)
    assert not loop.running
    assert isinstance(loop.error, RuntimeError) and "motor write failed" in str(loop.error)
