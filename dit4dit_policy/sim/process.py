"""The simulated G1 (physics + the robot's DDS side) in a process of its own, driven through pipes.

In one process with rclpy the executor holds the interpreter lock long enough to stall the 500 Hz
physics loop by 20-120 ms (measured: tick gap p99 19.8 ms, max 124 ms while the bridge and the
expert started; 3.9 / 18 ms without rclpy in the process), and the safety bridge latches a fault
after 100 ms without LowState. So the node runs the simulation in a child process, as the bridge
runs its motor loop.

Child -> parent, on the event pipe: camera snapshots (rendered by the parent) and task-change
notices. Parent -> child, on the call pipe: reset, task_state, stats. The latest stamp is shared
memory. If the parent goes away, the child stops: the robot goes silent, and the bridge damps.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dit4dit_policy.child_process import ChildCalls, serve_calls
from dit4dit_policy.periodic import make_realtime
from dit4dit_policy.sim.config import SimConfig, TaskConfig
from dit4dit_policy.sim.physics import G1Sim
from dit4dit_policy.sim.simulator import SimulatedG1, Snapshot

_METHODS = ("reset", "task_state", "stats")
EVENT_QUEUE = 64  # ~2 s of camera snapshots


@dataclass(frozen=True)
class SimSpec:
    sim: SimConfig
    task: TaskConfig
    domain_id: int
    network_interface: str


def _task_dict(robot: SimulatedG1, state) -> dict[str, Any]:
    return {**state.as_dict(), "stamp": round(robot.stamp(state.sim_time), 6)}


def _stats(robot: SimulatedG1) -> dict[str, Any]:
    s = robot.stats()
    return {**s.__dict__, "slips": robot.slips, "sim_time": robot.sim.time, "running": robot.running,
            "realtime": robot.realtime}


def _send_events(outbox: queue.Queue, events) -> None:
    while True:
        item = outbox.get()
        if item is None:
            return
        try:
            events.send(item)
        except (BrokenPipeError, OSError):
            return  # the parent is gone; the call pipe tells the main loop


def _serve(conn, events, spec: SimSpec, clock) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the robot goes
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Just below the physics loop: the DDS threads created from here on inherit it, so a busy
    # machine cannot starve the robot's side of the wire while the bridge (real-time too) waits on it.
    make_realtime(max(0, spec.sim.realtime_priority - 1))
    # The physics loop never blocks on the pipe (a stalled parent would silence the robot): events
    # go through a bounded queue to a sender thread, and are dropped when it is full.
    outbox: queue.Queue = queue.Queue(maxsize=EVENT_QUEUE)
    sender = threading.Thread(target=_send_events, args=(outbox, events), name="g1_sim_events", daemon=True)
    sender.start()

    def emit(kind: str, value: Any) -> None:
        with contextlib.suppress(queue.Full):
            outbox.put_nowait((kind, value))

    try:
        robot = SimulatedG1(
            G1Sim(spec.sim, spec.task),
            spec.domain_id,
            spec.network_interface,
            on_snapshot=lambda snap: emit("snapshot", snap),
            on_task_change=lambda: emit("task", None),
            shared_clock=clock,
        ).start()
    except Exception as e:
        conn.send(("error", e))
        return
    conn.send(("ok", None))

    def call(method: str, args: tuple) -> Any:
        if not robot.running:
            raise RuntimeError("the simulation loop has stopped")
        return _stats(robot) if method == "stats" else _task_dict(robot, getattr(robot, method)())

    try:
        serve_calls(conn, _METHODS, call, "simulator")
    finally:
        error = None
        try:
            robot.stop()
        except RuntimeError as e:  # the loop had died: say why in the final stats
            error = e
        with contextlib.suppress(queue.Full):  # full only if the sender is gone with the parent
            outbox.put(None, timeout=2.0)
        sender.join(2.0)
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(("ok", {**_stats(robot), "error": None if error is None else repr(error.__cause__ or error)}))


class SimProcess:
    """SimulatedG1 in a child process. The callbacks run on a reader thread of this process."""

    def __init__(
        self,
        spec: SimSpec,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        on_task_change: Callable[[], None] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        ctx = mp.get_context("spawn")  # no fork of a process with DDS and ROS threads
        self._conn, child_conn = ctx.Pipe()
        events, child_events = ctx.Pipe(duplex=False)
        self._clock = ctx.Value("d", 0.0, lock=False)
        self._proc = ctx.Process(target=_serve, args=(child_conn, child_events, spec, self._clock),
                                 name="g1-sim-physics", daemon=True)
        self._proc.start()
        child_conn.close()
        child_events.close()
        self._child = ChildCalls(self._conn, self._proc, "simulator process")
        self._on_snapshot = on_snapshot
        self._on_task_change = on_task_change
        self.final_stats: dict[str, Any] | None = None
        self._child.wait(start_timeout, "start")
        self._events = events
        self._reader = threading.Thread(target=self._read_events, name="g1_sim_events", daemon=True)
        self._reader.start()

    def _call(self, method: str, timeout: float = 10.0) -> Any:
        return self._child.call(method, timeout=timeout)

    def _read_events(self) -> None:
        while True:
            try:
                kind, value = self._events.recv()
            except (EOFError, OSError):
                return
            if kind == "snapshot" and self._on_snapshot is not None:
                self._on_snapshot(value)
            elif kind == "task" and self._on_task_change is not None:
                self._on_task_change()

    @property
    def alive(self) -> bool:
        return self._child.alive

    @property
    def pid(self) -> int:
        return self._proc.pid

    def reset(self) -> dict[str, Any]:
        """New episode; the new task state (the /sim/task JSON object)."""
        return self._call("reset")

    def task_state(self) -> dict[str, Any]:
        return self._call("task_state")

    def stats(self) -> dict[str, Any]:
        """LowStates published, commands accepted/dropped, real-time slips, simulated time."""
        return self._call("stats")

    def stamp_now(self) -> float:
        """The latest simulated instant as a wall-anchored stamp (shared memory, no call)."""
        return self._clock.value

    def close(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """Stop the child; returns its final stats (None if it had died)."""
        with self._child.lock:
            if self.alive:
                try:
                    self._conn.send(("close", ()))
                    self.final_stats = self._child.wait(timeout, "close")
                except (RuntimeError, OSError, EOFError):
                    self.final_stats = None
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        self._conn.close()
        self._reader.join(2.0)
        self._events.close()
        return self.final_stats
