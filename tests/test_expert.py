"""The scripted expert without ROS: its field reaches sampled blocks in the kinematic model and returns
home clear of the table and block; through the safety limiter on the simulator it solves episodes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dit4dit_policy.sim.config import load_sim_configs
from dit4dit_policy.sim.expert import ExpertConfig, ReachExpert, load_expert_config
from dit4dit_policy.sim.harness import ExpertHarness
from dit4dit_policy.sim.physics import G1Sim
from dit4dit_policy.sim.scene import Layout

DT = 0.02  # the expert's 50 Hz


@pytest.fixture(scope="module")
def expert(joint_table) -> ReachExpert:
    return ReachExpert(joint_table, load_expert_config())


def _blocks(n: int) -> list[np.ndarray]:
    _, task = load_sim_configs()
    lay = Layout()
    out = []
    for k in range(n):
        rng = np.random.default_rng([task.seed, k])
        out.append(np.array([rng.uniform(*task.block_x), rng.uniform(*task.block_y), lay.block_rest_z]))
    return out


def _gap_to_box(p: np.ndarray, centre: np.ndarray, half: np.ndarray, radius: float) -> float:
    """Distance from a sphere (centre p) to an axis-aligned box, < 0 when they overlap."""
    d = np.abs(p - centre) - half
    outside = np.linalg.norm(np.maximum(d, 0.0))
    return float(outside + min(d.max(), 0.0) - radius)


def _follow(expert: ReachExpert, q: np.ndarray, block: np.ndarray, touched: bool, until, steps: int = 2000):
    """Integrate the expert's joint velocity as if the arm followed it exactly; the hand path."""
    rows = expert.kin.arm_rows
    path = []
    for _ in range(steps):
        step = expert.step(q, block, touched)
        path.append((step.hand, np.linalg.norm(step.hand_velocity), q[rows].copy()))
        if until(step, q):
            return q, path
        q = q.copy()
        q[rows] += DT * step.joint_velocity
    raise AssertionError(f"not reached in {steps * DT:.0f} s; hand at {path[-1][0].round(3)}")


@pytest.mark.parametrize("waist_pitch", [0.0, 0.15])  # 0.15: the torso held by the bridge sags about that much
def test_when_following_the_field_expect_each_sampled_block_touched_then_home_clear_of_table(
    expert, joint_table, waist_pitch
):
    lay, cfg = expert.layout, expert.config
    r = expert.kin.hand_radius
    half = np.array(lay.block_size) / 2
    lower = joint_table.column("min_position")[expert.kin.arm_rows] + joint_table.soft_margin
    upper = joint_table.column("max_position")[expert.kin.arm_rows] - joint_table.soft_margin
    for block in _blocks(12):
        q = expert.home.copy()
        q[joint_table.index("waist_pitch_joint")] = waist_pitch

        def touching(step, q, block=block):
            return _gap_to_box(step.hand, block, half, r) <= 0.002

        q, approach = _follow(expert, q, block, False, touching)

        def at_home(step, q):
            return np.abs(q[expert.kin.arm_rows] - expert.home_arm).max() <= 0.01

        q, retreat = _follow(expert, q, block, True, at_home)
        for phase, path in (("approach", approach), ("retreat", retreat)):
            for hand, speed, q_arm in path:
                assert speed <= cfg.max_speed + 1e-9
                assert np.all(q_arm >= lower - 1e-6) and np.all(q_arm <= upper + 1e-6), f"{phase}: joint limit"
                if hand[0] + r > lay.table_front:  # above the table: never through it
                    assert hand[2] - r >= lay.table_top - 1e-3, f"{phase}: hand {hand.round(3)} in the table"
                # Only the touch itself may press into the block, by at most `press`.
                assert _gap_to_box(hand, block, half, r) >= -cfg.press - 1e-3, f"{phase}: hand inside the block"
        # The approach comes down onto the block from above: the last hover is over its top.
        hovering = [h for h, _, _ in approach if h[2] - r > block[2] + half[2] + 0.5 * cfg.hover]
        assert np.hypot(*(hovering[-1][:2] - block[:2])) < cfg.descend_radius[1] + 0.01


def test_when_asked_twice_expect_the_same_command_whatever_came_between(expert):
    """No hidden state: the command is a function of the observation alone."""
    q = expert.home.copy()
    q[expert.kin.arm_rows] += 0.1
    block = _blocks(1)[0]
    first = expert.command(q, block, False)
    expert.command(expert.home, block + 0.05, True)
    np.testing.assert_array_equal(expert.command(q, block, False), first)


def test_when_at_home_and_done_expect_a_command_that_holds_the_arm_against_gravity(expert, joint_table):
    cmd = expert.command(expert.home, _blocks(1)[0], True)
    rows = expert.kin.arm_rows
    expert.kin.set_pose(expert.home)
    np.testing.assert_allclose(cmd - expert.home_arm, expert.kin.gravity() / joint_table.column("kp")[rows],
                               atol=1e-9)


def test_when_inputs_are_bad_expect_value_errors(expert):
    block = _blocks(1)[0]
    with pytest.raises(ValueError, match="joint-table order"):
        expert.command(expert.home[:7], block, False)
    q = expert.home.copy()
    q[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        expert.command(q, block, False)
    with pytest.raises(ValueError, match="block"):
        expert.command(expert.home, block[:2], False)
    base = load_expert_config()
    for field, value in (("max_speed", 0.0), ("descend_radius", (0.05, 0.01)), ("lead_time", -1.0)):
        with pytest.raises(ValueError, match=field):
            ExpertConfig(**{**base.__dict__, field: value})


def test_when_task_json_is_parsed_expect_block_touched_episode_or_a_clear_error():
    from dit4dit_policy.nodes.expert_node import parse_task  # the node module imports rclpy

    task = {"episode": 4, "success": True, "block": {"position_in_pelvis": [0.35, -0.1, -0.005]}}
    block, touched, episode = parse_task(json.dumps(task))
    np.testing.assert_allclose(block, [0.35, -0.1, -0.005])
    assert touched is True and episode == 4
    for bad in ("not json", json.dumps({"episode": 1}), json.dumps({**task, "success": "yes"}),
                json.dumps({**task, "block": {"position_in_pelvis": [0.1, float("nan"), 0]}})):
        with pytest.raises(ValueError, match="task state"):
            parse_task(bad)


@pytest.mark.slow
def test_when_run_through_the_safety_limiter_on_the_simulator_expect_episodes_done_inside_limits():
    sim = G1Sim(*load_sim_configs(**{"task.seed": 5}))
    harness = ExpertHarness(sim, ReachExpert(sim.table, load_expert_config()))
    for _ in range(2):
        result = harness.run_episode(timeout=20.0)
        assert result.success and result.done, result
        assert result.done_time < 15.0
        # The targets stay inside every limit; the limiter only smooths the odd step (the start of
        # the motion, the reversal at the touch: 57.5 ticks per episode on average, 69 at most, over
        # bench_sim's 50 episodes with the 1.5 cm press).
        assert result.clamped["position"] == result.clamped["velocity"] == result.clamped["effort"] == 0, result
        assert result.clamped["acceleration"] < 80, result
        assert sim.task.at_home(sim.data)
