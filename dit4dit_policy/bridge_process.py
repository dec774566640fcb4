"""The motor loop in a process of its own, driven by the ROS node through a pipe.

In one Python process with rclpy, the executor's threads hold the interpreter lock in C calls the
500 Hz loop cannot preempt, and the loop's p99 period error grows from ~0.1 ms to ~1 ms (measured,
docs/BENCHMARKS.md). In its own process the loop shares the lock only with the short request
handler and the DDS state listener, both real-time as well.

If the parent dies or closes the pipe, the child damps (and hands the arms back in arm_sdk mode)
before it exits: a crashed node never leaves the last position targets in force.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dit4dit_policy.bridge import Bridge
from dit4dit_policy.child_process import ChildCalls, serve_calls
from dit4dit_policy.g1 import LinkConfig
from dit4dit_policy.g1.link import StateSample
from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.periodic import make_realtime
from dit4dit_policy.safety import EnableResult, SafetyConfig, Verdict

# Calls the parent may make; anything else is a programming error, refused by name.
_METHODS = ("command", "activate", "deactivate", "stop", "estop", "reset", "latest_sample", "report")


@dataclass(frozen=True)
class BridgeSpec:
    """Everything the child needs to build its Bridge (plain data: it crosses the process boundary)."""

    robot_variant: str
    joint_table: str
    safety: SafetyConfig
    link: LinkConfig
    rate_hz: float
    realtime_priority: int
    exit_damping_time: float


def _report(bridge: Bridge) -> dict[str, Any]:
    period, latency = bridge.period_stats(), bridge.latency_stats()
    return {
        "status": bridge.status().as_dict(),
        "writing": bridge.sending,
        "realtime": bridge.realtime,
        "loop_error": repr(bridge.loop_error) if bridge.loop_error is not None else None,
        "period": asdict(period),
        "latency": asdict(latency),
        "states_received": bridge.link.states_received,
        "commands_sent": bridge.link.commands_sent,
    }


def _serve(conn, spec: BridgeSpec) -> None:
    # Ctrl-C and SIGTERM reach the whole process group; the parent decides how to stop (damping
    # first), so the child ignores them and follows the parent, or damps when the parent is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Just below the loop: the threads created from here on (the DDS listener) inherit it, so no
    # ordinary process can preempt one of them while it holds the interpreter lock.
    make_realtime(max(0, spec.realtime_priority - 1))
    try:
        bridge = Bridge(
            load_joint_table(spec.robot_variant, spec.joint_table),
            spec.safety,
            spec.link,
            spec.rate_hz,
            spec.realtime_priority,
        )
        bridge.open()
    except Exception as e:  # reported to the parent, which fails its configure transition
        conn.send(("error", e))
        return
    conn.send(("ok", None))

    def call(method: str, args: tuple) -> Any:
        return _report(bridge) if method == "report" else getattr(bridge, method)(*args)

    try:
        serve_calls(conn, _METHODS, call, "bridge")
    finally:
        bridge.deactivate(spec.exit_damping_time)
        bridge.close()


class BridgeProcess:
    """The Bridge API the node needs, served by a child process."""

    def __init__(self, spec: BridgeSpec, start_timeout: float = 30.0):
        ctx = mp.get_context("spawn")  # no fork of a process with DDS and ROS threads
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, spec), name="dit4dit-motor", daemon=True)
        self._proc.start()
        child.close()
        self._child = ChildCalls(self._conn, self._proc, "motor process")
        self._child.wait(start_timeout, "start")

    def _call(self, method: str, *args: Any, timeout: float = 5.0) -> Any:
        return self._child.call(method, *args, timeout=timeout)

    @property
    def alive(self) -> bool:
        return self._child.alive

    def command(
        self, names: list[str], position: np.ndarray, velocity: np.ndarray | None, effort: np.ndarray | None,
        stamp: float,
    ) -> Verdict:
        return self._call("command", names, position, velocity, effort, stamp)

    def activate(self, state_wait: float) -> EnableResult:
        return self._call("activate", state_wait, timeout=state_wait + 5.0)

    def deactivate(self, damping_time: float) -> None:
        self._call("deactivate", damping_time, timeout=damping_time + 30.0)

    def stop(self) -> None:
        self._call("stop")

    def estop(self) -> None:
        self._call("estop")

    def reset(self) -> None:
        self._call("reset")

    def latest_sample(self) -> StateSample | None:
        return self._call("latest_sample")

    def report(self) -> dict[str, Any]:
        """Safety status, loop period and latency figures, and link counters, as plain data."""
        return self._call("report")

    def close(self, timeout: float = 30.0) -> None:
        """Damp, stop writing, leave the DDS domain and end the child."""
        if self.alive:
            with self._child.lock:
                self._conn.send(("close", ()))
            self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()
