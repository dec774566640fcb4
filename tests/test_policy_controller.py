"""PolicyController end to end on a fake clock: synthetic stamped inputs, a fake policy, no ROS."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from dit4dit_policy.policy import (
    ChunkReady,
    Command,
    Hold,
    HoldReason,
    InferenceFailed,
    InferenceWorker,
    PolicyConfig,
    PolicyController,
    WorkerStats,
)

CFG = PolicyConfig(slop=0.01, max_frame_age=0.2, max_joint_age=0.1, action_period=0.1, blend_time=0.2, hold_time=0.2)
H = 8


class FakeWorker:
    """Synchronous stand-in: the test decides when the chunk for the pending observation is ready."""

    def __init__(self):
        self.submitted = []
        self.ready = []

    def submit(self, obs):
        self.submitted.append(obs)

    def poll(self):
        return self.ready.pop(0) if self.ready else None

    def finish(self, value, latency=0.05):
        """The newest submitted observation's chunk: every action = `value` (+ its joints)."""
        obs = self.submitted[-1]
        self.ready.append(ChunkReady(np.full((H, 2), value) + obs.joints[:2], obs.frame_stamp, latency))

    def stats(self):
        return WorkerStats(0, 0, 0, 0, math.nan, math.nan, math.nan)


class World:
    """Camera at 25 Hz, joints at 100 Hz, control at 50 Hz, on a fake clock in integer ms."""

    def __init__(self, ctrl):
        self.ctrl = ctrl
        self.ms = 1000
        self.camera = True
        self.joints = True

    def run(self, ms):
        outs = []
        for _ in range(ms):
            self.ms += 1
            t = self.ms / 1000
            if self.camera and self.ms % 40 == 0:
                self.ctrl.add_frame(f"img{self.ms}", t)
            if self.joints and self.ms % 10 == 0:
                self.ctrl.add_joints(np.zeros(3), t)
            if self.ms % 20 == 0:
                outs.append(self.ctrl.tick(t))
        return outs


def _setup():
    w = FakeWorker()
    ctrl = PolicyController(CFG, w)
    return w, ctrl, World(ctrl)


def test_when_no_inputs_then_no_chunk_expect_holds_with_those_reasons():
    w, ctrl, world = _setup()
    assert ctrl.tick(1.0) == Hold(HoldReason.NO_FRAME)
    world.run(100)
    assert ctrl.tick(world.ms / 1000) == Hold(HoldReason.NO_CHUNK)
    assert ctrl.status(world.ms / 1000).last_reason is HoldReason.NO_CHUNK


def test_when_chunk_ready_expect_commands_and_each_frame_submitted_once():
    w, ctrl, world = _setup()
    world.run(100)
    assert len(w.submitted) == len({o.frame_stamp for o in w.submitted}) == 2
    w.finish(0.5)
    outs = world.run(60)
    assert all(isinstance(o, Command) for o in outs)
    assert np.array_equal(outs[-1].target, [0.5, 0.5])
    st = ctrl.status(world.ms / 1000)
    assert st.last_reason is None and st.chunks_accepted == 1
    # Frame at 1.080, its chunk picked up by the tick at 1.120.
    assert st.last_chunk_delay == pytest.approx(0.04)
    assert st.chunk_delay_p50 == st.chunk_delay_p99 == pytest.approx(0.04)


def test_when_restarted_expect_nothing_from_before_used_and_the_first_command_from_the_new_scene():
    w, ctrl, world = _setup()
    world.run(100)
    w.finish(0.5)
    assert isinstance(world.run(60)[-1], Command)
    before = len(w.submitted)
    t = world.ms / 1000 + 0.005  # after the newest frame (world.ms / 1000), which is being inferred
    ctrl.restart(t)
    ctrl.add_frame("late frame from before", t - 0.01)  # still on its way at the restart
    w.finish(0.9)  # an inference on an observation from before the restart finishes after it
    outs = world.run(30)
    assert all(isinstance(o, Hold) for o in outs)  # no chunk: neither the old ones nor the late one
    assert ctrl.status(world.ms / 1000).chunks_rejected == 1
    world.run(30)
    new = w.submitted[before:]
    assert new and all(o.frame_stamp >= t for o in new)
    w.finish(0.2)
    outs = world.run(300)
    assert np.array_equal(outs[-1].target, [0.2, 0.2])


def test_when_no_chunk_taken_yet_expect_delay_percentiles_nan():
    _, ctrl, world = _setup()
    world.run(100)
    st = ctrl.status(world.ms / 1000)
    assert math.isnan(st.chunk_delay_p50) and math.isnan(st.chunk_delay_p99)


def test_when_new_chunk_arrives_expect_smooth_crossfade_in_published_targets():
    w, ctrl, world = _setup()
    world.run(100)
    w.finish(0.0)
    before = world.run(100)
    w.finish(1.0)
    outs = before[-1:] + world.run(400)
    values = [o.target[0] for o in outs]
    steps = np.abs(np.diff(values))
    assert values[-1] == 1.0
    # smoothstep's steepest slope is 1.5x a linear crossfade's
    assert steps.max() <= 1.5 * 1.0 * 0.02 / CFG.blend_time + 1e-12


def test_when_camera_drops_expect_stale_frame_then_recovery_by_itself():
    w, ctrl, world = _setup()
    world.run(100)
    w.finish(0.3)
    world.run(40)
    world.camera = False
    outs = world.run(300)
    assert outs[-1] == Hold(HoldReason.STALE_FRAME)
    world.camera = True
    outs = world.run(100)
    # The chunk (last action at 1.88) is still valid: publishing resumes by itself.
    assert isinstance(outs[-1], Command) and outs[-1].target[0] == 0.3
    w.finish(0.7)
    outs = world.run(400)
    assert isinstance(outs[-1], Command) and outs[-1].target[0] == 0.7


def test_when_joints_drop_expect_stale_joints():
    w, ctrl, world = _setup()
    world.run(100)
    world.joints = False
    outs = world.run(150)
    assert outs[-1] == Hold(HoldReason.STALE_JOINTS)
    assert ctrl.status(world.ms / 1000).joint_age > CFG.max_joint_age


def test_when_no_new_chunk_expect_hold_then_exhausted():
    w, ctrl, world = _setup()
    world.run(100)
    w.finish(0.2)
    outs = world.run(1000)
    kinds = [o.reason if isinstance(o, Hold) else "cmd" for o in outs]
    first_exhausted = kinds.index(HoldReason.EXHAUSTED)
    assert set(kinds[:first_exhausted]) == {"cmd"}
    assert set(kinds[first_exhausted:]) == {HoldReason.EXHAUSTED}


def test_when_model_fails_expect_latched_model_error_until_reset():
    w, ctrl, world = _setup()
    world.run(100)
    w.ready.append(InferenceFailed("RuntimeError: boom", 1.08))
    outs = world.run(200)
    assert set(outs) == {Hold(HoldReason.MODEL_ERROR, "RuntimeError: boom")}
    assert ctrl.status(world.ms / 1000).fault == "RuntimeError: boom"
    ctrl.reset()
    world.run(100)
    w.finish(0.1)
    assert isinstance(world.run(40)[-1], Command)


def test_when_chunk_has_a_different_joint_count_expect_model_error():
    w, ctrl, world = _setup()
    world.run(100)
    w.finish(0.0)
    world.run(100)
    w.ready.append(ChunkReady(np.zeros((H, 3)), w.submitted[-1].frame_stamp, 0.01))
    out = world.run(20)[-1]
    assert out.reason is HoldReason.MODEL_ERROR and "3 joints" in out.detail


def test_when_clock_goes_back_expect_clock_error_and_everything_discarded():
    w, ctrl, world = _setup()
    world.run(100)
    w.finish(0.0)
    world.run(40)
    assert ctrl.tick(0.5).reason is HoldReason.CLOCK_ERROR
    assert ctrl.tick(float("nan")).reason is HoldReason.CLOCK_ERROR
    assert ctrl.tick(world.ms / 1000) == Hold(HoldReason.NO_FRAME)


def test_when_driven_with_the_real_worker_expect_commands_from_the_fake_policy():
    def policy(obs):
        time.sleep(0.01)
        return np.full((H, 2), 0.25)

    with InferenceWorker(policy, latency_budget=1.0) as worker:
        ctrl = PolicyController(CFG, worker)
        world = World(ctrl)
        world.run(100)
        end = time.monotonic() + 5.0
        while worker.stats().completed == 0 and time.monotonic() < end:
            time.sleep(0.001)
        outs = world.run(300)
    assert isinstance(outs[-1], Command) and outs[-1].target[0] == 0.25
    st = ctrl.status(world.ms / 1000)
    assert st.worker.completed >= 1 and st.worker.latency_p50 >= 0.01


def test_config_when_values_invalid_expect_errors_naming_the_field():
    with pytest.raises(ValueError, match="blend_time must be > 0"):
        PolicyConfig(blend_time=0.0)
    with pytest.raises(ValueError, match="slop must be >= 0"):
        PolicyConfig(slop=-0.1)
    with pytest.raises(ValueError, match="max_frame_age must be a finite number"):
        PolicyConfig(max_frame_age=float("inf"))
    with pytest.raises(ValueError, match="buffer_size"):
        PolicyConfig(buffer_size=0)
    with pytest.raises(ValueError, match=r"unknown PolicyConfig keys \['slopp'\]"):
        PolicyConfig.from_mapping({"slopp": 0.1})
    assert PolicyConfig.from_mapping({"slop": 0.0, "hold_time": 0}).slop == 0.0


def test_config_when_loaded_from_policy_yaml_expect_valid_and_equal_to_the_defaults():
    from dit4dit_policy.config import load_yaml

    params = load_yaml("policy.yaml")["policy_node"]["ros__parameters"]
    core = {name: params[name] for name in PolicyConfig.__dataclass_fields__}
    assert PolicyConfig.from_mapping(core) == PolicyConfig()


def test_policy_package_when_imported_expect_no_ros_module_loaded():
    import subprocess
    import sys

    code = "import sys, dit4dit_policy.policy; print(sorted(m for m in sys.modules if m.startswith(('rclpy', 'rcl'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
