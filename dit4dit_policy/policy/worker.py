"""Asynchronous inference: the control loop hands over observations and picks up chunks, never waits.

One worker thread runs `infer_fn` (the only thread that touches the model, which is not
thread-safe) on the newest observation submitted since it last became free; an observation that
was replaced before the worker got to it is dropped (counted), since a chunk from an older view is
worth less than one from a newer. The control side's calls only take a lock around a few
assignments. A finished chunk waits in a one-slot mailbox; a failure is never overwritten by a
later success, so the control side always learns of it.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dit4dit_policy.policy.chunking import check_chunk
from dit4dit_policy.policy.sync import Observation

# Latencies kept for the percentiles in `stats` (a few minutes at 10-30 Hz).
_LATENCY_HISTORY = 4096


@dataclass(frozen=True)
class ChunkReady:
    chunk: np.ndarray  # [H, D] float64, validated finite
    obs_stamp: float  # the observation's frame stamp: the chunk's time origin
    latency: float  # seconds infer_fn took (monotonic clock)


@dataclass(frozen=True)
class InferenceFailed:
    error: str  # exception type and message, for the node's log and status
    obs_stamp: float


@dataclass(frozen=True)
class WorkerStats:
    completed: int
    failed: int
    overruns: int  # inferences slower than the latency budget
    dropped: int  # observations replaced before the worker took them
    latency_p50: float  # seconds; nan before the first inference
    latency_p99: float
    latency_max: float


class InferenceWorker:
    def __init__(
        self,
        infer_fn: Callable[[Observation], Any],
        latency_budget: float,
        name: str = "policy-inference",
    ):
        if not latency_budget > 0:
            raise ValueError(f"latency_budget must be > 0, got {latency_budget}")
        self._infer_fn = infer_fn
        self.latency_budget = latency_budget
        self._cond = threading.Condition()
        self._pending: Observation | None = None
        self._result: ChunkReady | InferenceFailed | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._latencies = np.full(_LATENCY_HISTORY, np.nan)
        self._completed = 0
        self._failed = 0
        self._overruns = 0
        self._dropped = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to finish (after the inference in progress, if any). True if it has."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> InferenceWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def submit(self, obs: Observation) -> None:
        """Replace the pending observation (non-blocking)."""
        with self._cond:
            if self._stopping:
                return
            if self._pending is not None:
                self._dropped += 1
            self._pending = obs
            self._cond.notify()

    def poll(self) -> ChunkReady | InferenceFailed | None:
        """Take the finished result, if any (non-blocking)."""
        with self._cond:
            result, self._result = self._result, None
        return result

    def stats(self) -> WorkerStats:
        with self._cond:
            lat = self._latencies.copy()
            counts = (self._completed, self._failed, self._overruns, self._dropped)
        lat = lat[np.isfinite(lat)]
        if lat.size == 0:
            p50 = p99 = worst = float("nan")
        else:
            p50, p99 = (float(v) for v in np.percentile(lat, [50, 99]))
            worst = float(lat.max())
        return WorkerStats(*counts, latency_p50=p50, latency_p99=p99, latency_max=worst)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                obs, self._pending = self._pending, None
            start = time.perf_counter()
            result: ChunkReady | InferenceFailed
            try:
                chunk = check_chunk(self._infer_fn(obs))
            except Exception as e:  # any model fault becomes a result the control side acts on
                latency = time.perf_counter() - start
                result = InferenceFailed(_describe(e), obs.frame_stamp)
            else:
                latency = time.perf_counter() - start
                result = ChunkReady(chunk, obs.frame_stamp, latency)
            with self._cond:
                self._latencies[(self._completed + self._failed) % _LATENCY_HISTORY] = latency
                self._overruns += latency > self.latency_budget
                if isinstance(result, InferenceFailed):
                    self._failed += 1
                    self._result = result
                else:
                    self._completed += 1
                    if not isinstance(self._result, InferenceFailed):
                        self._result = result


def _describe(e: Exception) -> str:
    """Type, message and the innermost frame: enough to find the fault from the status topic."""
    last = traceback.extract_tb(e.__traceback__)[-1:]
    where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
    return f"{type(e).__name__}: {e}{where}"
