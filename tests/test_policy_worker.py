"""InferenceWorker: the control side never waits for inference; newest observation wins; faults surface."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from dit4dit_policy.policy import ChunkReady, InferenceFailed, InferenceWorker, Observation

INFER_S = 0.05


def _obs(stamp):
    return Observation(frame=stamp, frame_stamp=stamp, joints=np.zeros(2), joint_stamp=stamp)


class SlowPolicy:
    """Sleeps INFER_S, then returns a chunk whose values are the observation's stamp; records calls."""

    def __init__(self, sleep=INFER_S):
        self.sleep = sleep
        self.seen: list[float] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, obs):
        self.release.wait(5.0)
        self.seen.append(obs.frame_stamp)
        time.sleep(self.sleep)
        return np.full((4, 2), obs.frame_stamp)


def _wait_result(worker, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = worker.poll()
        if r is not None:
            return r
        time.sleep(0.001)
    raise AssertionError("no result from the worker")


def test_when_control_loop_runs_during_slow_inference_expect_its_calls_far_faster_than_inference():
    policy = SlowPolicy()
    worst = 0.0
    chunks = []
    with InferenceWorker(policy, latency_budget=1.0) as worker:
        end = time.monotonic() + 6 * INFER_S
        k = 0
        while time.monotonic() < end:
            t0 = time.perf_counter()
            worker.submit(_obs(float(k)))
            r = worker.poll()
            worst = max(worst, time.perf_counter() - t0)
            if r is not None:
                chunks.append(r)
            k += 1
            time.sleep(0.002)
    assert chunks, "inference never finished while the loop ran"
    assert len(policy.seen) >= 2
    # Generous ratio against a machine that may be busy: a blocked call would take ~INFER_S.
    assert worst < INFER_S / 10, f"a worker call took {worst * 1e3:.2f} ms"


def test_when_observations_replaced_while_busy_expect_the_newest_inferred_and_others_dropped():
    policy = SlowPolicy(sleep=0.0)
    policy.release.clear()
    with InferenceWorker(policy, latency_budget=1.0) as worker:
        worker.submit(_obs(1.0))  # taken by the worker, which then waits on `release`
        end = time.monotonic() + 5.0
        while worker._pending is not None and time.monotonic() < end:
            time.sleep(0.001)
        for s in (2.0, 3.0, 4.0):
            worker.submit(_obs(s))
        policy.release.set()
        # The mailbox holds one result: the chunk from 1.0 may already be replaced by 4.0's.
        result = _wait_result(worker)
        if result.obs_stamp == 1.0:
            result = _wait_result(worker)
    assert result.obs_stamp == 4.0
    assert np.all(result.chunk == 4.0)
    assert policy.seen == [1.0, 4.0]
    assert worker.stats().dropped == 2


def test_when_inference_slower_than_budget_expect_overruns_counted_and_latency_reported():
    with InferenceWorker(SlowPolicy(sleep=0.02), latency_budget=0.005) as worker:
        worker.submit(_obs(1.0))
        r = _wait_result(worker)
    assert isinstance(r, ChunkReady)
    assert r.latency >= 0.02
    stats = worker.stats()
    assert (stats.completed, stats.overruns, stats.failed) == (1, 1, 0)
    assert stats.latency_p50 >= 0.02


def test_when_model_raises_expect_a_failure_result_that_a_later_success_does_not_hide():
    calls = []

    def flaky(obs):
        calls.append(obs.frame_stamp)
        if obs.frame_stamp == 1.0:
            raise RuntimeError("CUDA out of memory")
        return np.zeros((2, 2))

    with InferenceWorker(flaky, latency_budget=1.0) as worker:
        worker.submit(_obs(1.0))
        end = time.monotonic() + 5.0
        while worker.stats().failed == 0 and time.monotonic() < end:
            time.sleep(0.001)
        worker.submit(_obs(2.0))
        while worker.stats().completed == 0 and time.monotonic() < end:
            time.sleep(0.001)
        r = worker.poll()
    assert isinstance(r, InferenceFailed)
    assert r.error.startswith("RuntimeError: CUDA out of memory at ")
    assert r.obs_stamp == 1.0
    assert calls == [1.0, 2.0]


@pytest.mark.parametrize(
    "output, match",
    [(np.zeros(3), "shape"), (np.array([[0.0, np.nan]]), "non-finite"), ("chunk", "ValueError")],
)
def test_when_model_returns_garbage_expect_a_failure_naming_it(output, match):
    with InferenceWorker(lambda obs: output, latency_budget=1.0) as worker:
        worker.submit(_obs(1.0))
        r = _wait_result(worker)
    assert isinstance(r, InferenceFailed)
    assert match in r.error


def test_when_stopped_expect_thread_ends_and_submissions_ignored():
    policy = SlowPolicy(sleep=0.0)
    worker = InferenceWorker(policy, latency_budget=1.0)
    worker.start()
    assert worker.running
    assert worker.stop(timeout=5.0)
    assert not worker.running
    worker.submit(_obs(1.0))
    assert worker.poll() is None
    assert policy.seen == []


def test_when_budget_invalid_expect_error():
    with pytest.raises(ValueError, match="latency_budget"):
        InferenceWorker(lambda obs: None, latency_budget=0.0)
