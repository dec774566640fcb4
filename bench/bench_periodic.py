"""Benchmark the fixed-rate loop (`PeriodicThread`) for its final busy-wait: CPU against period error.

Runs an empty 500 Hz loop for --seconds per setting, with and without SCHED_FIFO, for each spin
time, while --load busy processes compete for the cores (as inference and the simulator do in the
demo). CPU is the loop thread's own, as a share of one core.

    python bench/bench_periodic.py [--seconds 8] [--load 2] [--spins 0 0.1 0.4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from dit4dit_policy.periodic import PeriodicThread


def _busy() -> None:
    while True:
        pass


def measure(rate: float, seconds: float, spin: float, priority: int) -> dict:
    cpu: list[tuple[float, float]] = []  # (monotonic, the loop thread's CPU seconds) at each tick

    def tick(now: float) -> None:
        r = resource.getrusage(resource.RUSAGE_THREAD)
        cpu.append((now, r.ru_utime + r.ru_stime))

    loop = PeriodicThread(1.0 / rate, tick, "bench-loop", realtime_priority=priority, spin=spin)
    loop.start()
    time.sleep(seconds)
    loop.stop()
    stats = loop.stats()
    (t0, c0), (t1, c1) = cpu[0], cpu[-1]
    return {
        "spin ms": spin * 1e3,
        "SCHED_FIFO": loop.realtime,
        "CPU % of a core": 100.0 * (c1 - c0) / (t1 - t0),
        "error p50 us": stats.p50 * 1e6,
        "error p99 us": stats.p99 * 1e6,
        "error max us": stats.max * 1e6,
        "missed": stats.missed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per setting")
    parser.add_argument("--rate", type=float, default=500.0, help="loop rate (Hz)")
    parser.add_argument("--load", type=int, default=2, help="busy processes beside the loop")
    parser.add_argument("--spins", type=float, nargs="+", default=[0.0, 0.1, 0.4], help="spin times (ms)")
    parser.add_argument("--priority", type=int, default=80, help="SCHED_FIFO priority of the loop (as the bridge's)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    hogs = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for hog in hogs:
        hog.start()
    try:
        settings = [(spin * 1e-3, prio) for prio in (args.priority, 0) for spin in args.spins]
        rows = [measure(args.rate, args.seconds, spin, prio) for spin, prio in track(settings, description="loops")]
    finally:
        for hog in hogs:
            hog.terminate()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, load {args.load}"
    table = Table(title=f"{args.rate:g} Hz loop, {args.seconds:g} s per setting ({machine})")
    for key in rows[0]:
        table.add_column(key, justify="right")
    for row in rows:
        table.add_row(*(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
