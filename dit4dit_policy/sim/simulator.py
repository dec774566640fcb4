"""The simulated G1 on DDS in real time.

`SimulatedG1` is a `g1.robot_side.RobotOnDds` whose plant is a `G1Sim`: it speaks the robot's
protocol exactly like the loopback robot (rt/lowstate at 500 Hz, CRC-checked rt/lowcmd and
rt/arm_sdk, the built-in hold and the arm_sdk blend) and steps MuJoCo under the mixed motor law.

Time: simulated time advances in fixed physics steps, paced to the monotonic clock (a late loop
catches up with several steps at once). Timestamps are simulated time anchored to the wall clock
at start: stamp = sim_time + offset, with offset = time.time() - sim_time when the loop starts. So
camera stamps are comparable with stamps taken from the wall clock (the safety bridge stamps
/joint_states that way). If the simulation falls more than MAX_LAG behind, it gives up that
time: the offset grows by it (stamps stay with the wall clock; `slips` counts it).

Camera: every 1/camera_rate_hz of simulated time the loop hands a `Snapshot` (joint positions,
block pose and colour, times) to `on_snapshot`; rendering happens elsewhere (renderer.py), off the
physics loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dit4dit_policy.g1.robot_side import Reading, RobotOnDds
from dit4dit_policy.sim.physics import G1Sim
from dit4dit_policy.sim.task import TaskState

STATE_RATE_HZ = 500.0  # rt/lowstate, as on the robot
MAX_LAG = 0.1  # s of simulated time the loop catches up at most; beyond, the time is given up


@dataclass(frozen=True)
class Snapshot:
    """What the camera needs to draw one frame."""

    qpos: np.ndarray
    touched: bool
    sim_time: float
    stamp: float  # wall-anchored seconds (what the ROS header carries)
    index: int


class SimulatedG1(RobotOnDds):
    """Run with start()/stop() or as a context manager; reset() starts a new task episode."""

    thread_name = "g1_sim"

    def __init__(
        self,
        sim: G1Sim,
        domain_id: int = 1,
        network_interface: str = "",
        on_snapshot: Callable[[Snapshot], None] | None = None,
        on_task_change: Callable[[], None] | None = None,
        shared_clock=None,
    ) -> None:
        """shared_clock: anything with a float `value` (a multiprocessing.Value), set to the latest stamp."""
        c = sim.config
        super().__init__(domain_id, network_interface, STATE_RATE_HZ, c.mode_machine, sim.table, sim.home,
                         c.realtime_priority)
        self.sim = sim
        self._substeps = round(sim.config.physics_rate_hz / STATE_RATE_HZ)
        self._tick_dt = self._substeps * sim.config.timestep
        self._on_snapshot = on_snapshot
        self._on_task_change = on_task_change
        self._shared_clock = shared_clock
        self._lock = threading.Lock()  # the MjData: the loop steps it, reset() and task_state() read/write it
        self._anchor: float | None = None  # time.monotonic() at sim time 0
        self._wall_offset = 0.0  # time.time() - time.monotonic()
        self._frame_period = 1.0 / sim.config.camera_rate_hz
        self._next_frame = 0.0
        self._frame_index = 0
        self._reading_now: Reading | None = None
        self.slips = 0

    # what the node uses

    def reset(self) -> TaskState:
        """New episode: right arm at home at rest, block at a new random pose."""
        with self._lock:
            state = self.sim.reset()
        self._notify()
        return state

    def task_state(self) -> TaskState:
        with self._lock:
            return self.sim.task_state()

    def stamp(self, sim_time: float) -> float:
        """Wall-anchored time of a simulated time (meaningful once the loop runs)."""
        return sim_time + (self._anchor or 0.0) + self._wall_offset

    def stamp_now(self) -> float:
        """Stamp of the latest simulated instant."""
        return self.stamp(self.sim.time)

    # the plant

    def _advance(self, now: float) -> None:
        sim = self.sim
        if self._anchor is None:
            self._anchor = now - sim.time
            self._wall_offset = time.time() - time.monotonic()
            self._next_frame = sim.time
        lag = (now - self._anchor) - sim.time
        if lag > MAX_LAG:
            self._anchor += lag - self._tick_dt
            self.slips += 1
            lag = self._tick_dt
        ticks = int(lag / self._tick_dt + 0.5)
        changed = False
        with self._lock:
            for _ in range(ticks):
                changed |= sim.step(self.mixer.law, self._substeps)
                if sim.time >= self._next_frame - 1e-9:
                    self._snapshot()
                    self._next_frame += self._frame_period
            self._reading_now = sim.reading()
        if self._shared_clock is not None:
            self._shared_clock.value = self.stamp_now()
        if changed:
            self._notify()

    def _reading(self) -> Reading:
        return self._reading_now

    def _notify(self) -> None:
        if self._on_task_change is not None:
            self._on_task_change()

    def _snapshot(self) -> None:
        if self._on_snapshot is None:
            return
        sim = self.sim
        self._on_snapshot(
            Snapshot(sim.data.qpos.copy(), sim.task.success, sim.time, self.stamp(sim.time), self._frame_index)
        )
        self._frame_index += 1
