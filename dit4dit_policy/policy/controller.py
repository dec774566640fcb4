"""What the policy node calls: messages in (`add_frame`, `add_joints`), one `tick(now)` per control
period out, a `status(now)` for the status topic. No ROS here; the node only converts messages.

Each tick: pair the newest frame with its joint state, hand a new observation to the inference
worker, take a finished chunk into the blender, and answer either a Command to publish or a Hold
saying why nothing is published (the bridge's watchdog then holds the robot). Input problems and
exhaustion clear by themselves when inputs or chunks return; a model failure is latched until
`reset()`, because a model that produced garbage once is not trusted to drive the robot unasked.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from dit4dit_policy.policy.chunking import AddResult, ChunkBlender
from dit4dit_policy.policy.config import PolicyConfig
from dit4dit_policy.policy.sync import NoObservation, Observation, StampSync
from dit4dit_policy.policy.worker import ChunkReady, InferenceFailed, WorkerStats

# Chunk delays kept for the percentiles in `status` (minutes at 10-30 chunks/s).
DELAY_WINDOW = 4096


class HoldReason(StrEnum):
    # The sync's reasons, with the same values (`HoldReason(SyncFailure.X.value)`).
    NO_FRAME = "no_frame"
    NO_JOINTS = "no_joints"
    STALE_FRAME = "stale_frame"
    STALE_JOINTS = "stale_joints"
    NO_MATCH_WITHIN_SLOP = "no_match_within_slop"
    NO_CHUNK = "no_chunk"
    EXHAUSTED = "exhausted"
    MODEL_ERROR = "model_error"
    # `now` was not finite or went back (a ROS clock reset): everything buffered is discarded.
    CLOCK_ERROR = "clock_error"


@dataclass(frozen=True)
class Command:
    target: np.ndarray  # [D] joint targets in robot units
    stamp: float  # the `now` it is for


@dataclass(frozen=True)
class Hold:
    reason: HoldReason
    detail: str = ""


@dataclass(frozen=True)
class PolicyStatus:
    last_reason: HoldReason | None  # None: the last tick published a command
    fault: str | None  # the latched model error, if any
    frame_age: float  # now - newest frame stamp (nan: none yet)
    joint_age: float
    chunks_accepted: int
    chunks_rejected: int  # arrived expired, out of order or from the future
    last_chunk_delay: float  # arrival time - observation stamp of the newest accepted chunk
    # Percentiles of that delay over the recent chunks: camera frame -> its chunk in use (nan: none yet).
    chunk_delay_p50: float
    chunk_delay_p99: float
    worker: WorkerStats


class Worker(Protocol):
    def submit(self, obs: Observation) -> None: ...
    def poll(self) -> ChunkReady | InferenceFailed | None: ...
    def stats(self) -> WorkerStats: ...


class PolicyController:
    """Thread-safe: message callbacks and the control tick may run on different threads."""

    def __init__(self, config: PolicyConfig, worker: Worker):
        self.config = config
        self._worker = worker
        self._sync = StampSync(config.slop, config.max_frame_age, config.max_joint_age, config.buffer_size)
        self._blender = ChunkBlender(config.action_period, config.blend_time, config.hold_time, config.blend_per_delay)
        self._lock = threading.Lock()
        self._last_now = -math.inf
        self._last_submitted = -math.inf
        self._not_before = -math.inf
        self._fault: str | None = None
        self._last_reason: HoldReason | None = HoldReason.NO_CHUNK
        self._accepted = 0
        self._rejected = 0
        self._last_delay = math.nan
        self._delays: deque[float] = deque(maxlen=DELAY_WINDOW)

    def add_frame(self, frame: Any, stamp: float) -> None:
        with self._lock:
            if stamp >= self._not_before:
                self._sync.add_frame(frame, stamp)

    def add_joints(self, joints: np.ndarray, stamp: float) -> None:
        with self._lock:
            if stamp >= self._not_before:
                self._sync.add_joints(joints, stamp)

    def reset(self) -> None:
        """Forget the fault, chunks and inputs (e.g. on lifecycle re-activation)."""
        with self._lock:
            self._clear()
            self._fault = None

    def restart(self, now: float) -> None:
        """A new episode from `now` (the scene was reset): forget the chunks and inputs, and use
        nothing observed before `now` - neither messages still on their way nor an inference still
        running on such an observation - so that the first command comes from the new scene. Until
        then the tick holds (NO_OBSERVATION / NO_CHUNK)."""
        with self._lock:
            self._clear()
            self._not_before = now

    def tick(self, now: float) -> Command | Hold:
        with self._lock:
            out = self._tick(now)
            self._last_reason = None if isinstance(out, Command) else out.reason
            return out

    def status(self, now: float) -> PolicyStatus:
        worker = self._worker.stats()  # percentiles take a while: not under the lock tick() needs
        with self._lock:
            delays = np.array(self._delays)
        p50, p99 = (float(v) for v in np.percentile(delays, [50, 99])) if delays.size else (math.nan, math.nan)
        with self._lock:
            frame_stamp, joint_stamp = self._sync.newest_stamps()
            return PolicyStatus(
                last_reason=self._last_reason,
                fault=self._fault,
                frame_age=math.nan if frame_stamp is None else now - frame_stamp,
                joint_age=math.nan if joint_stamp is None else now - joint_stamp,
                chunks_accepted=self._accepted,
                chunks_rejected=self._rejected,
                last_chunk_delay=self._last_delay,
                chunk_delay_p50=p50,
                chunk_delay_p99=p99,
                worker=worker,
            )

    def _clear(self) -> None:
        self._sync.clear()
        self._blender.reset()
        self._last_now = -math.inf
        self._last_submitted = -math.inf

    def _tick(self, now: float) -> Command | Hold:
        if self._fault is not None:
            return Hold(HoldReason.MODEL_ERROR, self._fault)
        if not math.isfinite(now) or now < self._last_now:
            detail = f"now={now} after {self._last_now}"
            self._clear()
            return Hold(HoldReason.CLOCK_ERROR, detail)
        self._last_now = now

        obs = self._sync.latest(now)
        # Only a new frame is worth an inference; at 50 Hz ticks a 30 Hz camera repeats itself.
        if isinstance(obs, Observation) and obs.frame_stamp > self._last_submitted:
            self._worker.submit(obs)
            self._last_submitted = obs.frame_stamp

        result = self._worker.poll()
        if isinstance(result, InferenceFailed):
            self._fault = result.error
            return Hold(HoldReason.MODEL_ERROR, self._fault)
        if isinstance(result, ChunkReady) and result.obs_stamp < self._not_before:
            self._rejected += 1  # inferred from before a restart
        elif isinstance(result, ChunkReady):
            try:
                added = self._blender.add(result.chunk, result.obs_stamp, now)
            except ValueError as e:  # e.g. the joint count changed between chunks
                self._fault = f"unusable chunk: {e}"
                return Hold(HoldReason.MODEL_ERROR, self._fault)
            if added is AddResult.ACCEPTED:
                self._accepted += 1
                self._last_delay = now - result.obs_stamp
                self._delays.append(self._last_delay)
            else:
                self._rejected += 1

        if isinstance(obs, NoObservation):
            return Hold(HoldReason(obs.reason.value))
        target = self._blender.target(now)
        if isinstance(target, np.ndarray):
            return Command(target, now)
        return Hold(HoldReason(target.value))
