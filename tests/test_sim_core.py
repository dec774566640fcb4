"""The simulated G1 without ROS: the model, the motor law per motor, command intake, the camera, the task."""

from __future__ import annotations

import threading

import mujoco
import numpy as np
import pytest

from dit4dit_policy.g1.crc import lowcmd_crc_c
from dit4dit_policy.g1.link import TOPIC_ARM_SDK, TOPIC_LOWCMD
from dit4dit_policy.g1.messages import LOWCMD_C, lowcmd_c_to_cdr, lowcmd_view
from dit4dit_policy.g1.robot_side import CommandMixer, MotorCommand
from dit4dit_policy.sim.config import SimConfig, TaskConfig, load_sim_configs
from dit4dit_policy.sim.physics import G1Sim
from dit4dit_policy.sim.renderer import FrameRenderer
from dit4dit_policy.sim.scene import BLOCK_BODY, HEAD_CAMERA, ROBOT_BASE
from dit4dit_policy.sim.simulator import SimulatedG1, Snapshot


@pytest.fixture(scope="module")
def configs() -> tuple[SimConfig, TaskConfig]:
    return load_sim_configs()


@pytest.fixture
def sim(configs) -> G1Sim:
    s = G1Sim(*configs)
    yield s
    s.close()


def _random_command(table, rng, enabled=None, weight: float = 1.0) -> MotorCommand:
    n = len(table.names)
    lo, hi = table.column("min_position"), table.column("max_position")
    return MotorCommand(
        enabled=np.ones(n, bool) if enabled is None else enabled,
        q=rng.uniform(lo, hi),
        dq=rng.uniform(-2, 2, n),
        tau=rng.uniform(-5, 5, n),
        kp=rng.uniform(0, 300, n),  # large enough that some motors hit their effort limit
        kd=rng.uniform(0, 5, n),
        weight=weight,
    )


def _state_before_step(sim: G1Sim) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q, dq and the gravity/Coriolis torque of the current state, computed on a copy."""
    data = mujoco.MjData(sim.model)
    data.qpos[:], data.qvel[:] = sim.data.qpos, sim.data.qvel
    mujoco.mj_forward(sim.model, data)
    return data.qpos[sim.qadr].copy(), data.qvel[sim.dadr].copy(), data.qfrc_bias[sim.dadr].copy()


# --- the model ---------------------------------------------------------------------------------


def test_when_fixed_base_expect_welded_pelvis_and_one_actuator_per_table_joint(sim, joint_table):
    m = sim.model
    assert m.body_jntnum[m.body(ROBOT_BASE).id] == 0, "a fixed base has no joint on the pelvis"
    assert m.nu == len(joint_table.names)
    for i, name in enumerate(joint_table.names):
        assert m.joint(m.actuator_trnid[i][0]).name == name
        assert m.actuator_forcerange[i][1] == joint_table.joints[i].limits.max_effort
    assert m.opt.timestep <= 0.002, "physics must run at 500 Hz or faster"
    assert sim.data.xpos[m.body(ROBOT_BASE).id][2] == pytest.approx(sim.layout.pelvis_height)


def test_when_floating_base_expect_free_pelvis_that_falls_without_a_balance_controller(configs):
    sim_config, task = configs
    floating = G1Sim(SimConfig(**{**sim_config.__dict__, "fixed_base": False}), task)
    m, d = floating.model, floating.data
    pelvis = m.body(ROBOT_BASE).id
    assert m.jnt_type[m.body_jntadr[pelvis]] == mujoco.mjtJoint.mjJNT_FREE
    mixer = CommandMixer(floating.table)
    z0 = d.xpos[pelvis][2]
    floating.step(mixer.law, 500)  # 1 s with only the built-in hold: nothing balances
    assert d.xpos[pelvis][2] < z0 - 0.02


def test_when_at_home_expect_no_contact_but_the_block_on_the_table(sim):
    m, d = sim.model, sim.data
    pairs = {tuple(sorted((m.geom(c.geom1).name, m.geom(c.geom2).name))) for c in d.contact[: d.ncon]}
    sim.step(CommandMixer(sim.table).law, 50)
    pairs |= {tuple(sorted((m.geom(c.geom1).name, m.geom(c.geom2).name))) for c in d.contact[: d.ncon]}
    assert pairs <= {("block", "table_top")}


def test_when_only_the_built_in_hold_expect_the_robot_keeps_its_pose(sim):
    sim.step(CommandMixer(sim.table).law, 1000)
    np.testing.assert_allclose(sim.reading().q, sim.home, atol=1e-6)  # gravity compensated, no sag


# --- the motor law -----------------------------------------------------------------------------


def test_when_lowcmd_expect_pd_effort_clamped_per_motor_and_disabled_motors_limp(sim, joint_table):
    rng = np.random.default_rng(1)
    enabled = rng.random(len(joint_table.names)) > 0.2
    cmd = _random_command(joint_table, rng, enabled)
    mixer = CommandMixer(joint_table)
    mixer.lowcmd(cmd)
    sim.step(mixer.law, 20)  # move away from rest so that dq matters
    q, dq, _ = _state_before_step(sim)
    sim.step(mixer.law)
    wanted = cmd.tau + cmd.kp * (cmd.q - q) + cmd.kd * (cmd.dq - dq)
    limit = joint_table.column("max_effort")
    oracle = np.where(enabled, np.clip(wanted, -limit, limit), 0.0)
    np.testing.assert_allclose(sim.data.actuator_force, oracle, rtol=1e-9, atol=1e-9)
    assert np.any(enabled & (np.abs(wanted) > limit)), "no motor was clamped: the test proves nothing"
    assert np.any(enabled & (np.abs(wanted) < limit))
    np.testing.assert_allclose(sim.reading().tau, sim.data.actuator_force)


@pytest.mark.parametrize("weight", [0.0, 0.4, 1.0])
def test_when_arm_sdk_expect_upper_body_blended_with_the_gravity_compensated_hold(sim, joint_table, weight):
    rng = np.random.default_rng(2)
    upper = np.array([j.group in ("waist", "arm") for j in joint_table.joints])
    enabled = upper & (rng.random(len(upper)) > 0.3)
    cmd = _random_command(joint_table, rng, enabled, weight)
    cmd = MotorCommand(cmd.enabled, cmd.q, cmd.dq, cmd.tau, cmd.kp * 0.1, cmd.kd, weight)  # unclamped
    mixer = CommandMixer(joint_table)
    mixer.arm_sdk(cmd)
    sim.step(mixer.law, 20)
    q, dq, gravity = _state_before_step(sim)
    sim.step(mixer.law)
    hold = joint_table.column("kp") * (sim.home - q) - joint_table.column("kd") * dq + gravity
    sdk = np.where(enabled, cmd.tau + cmd.kp * (cmd.q - q) + cmd.kd * (cmd.dq - dq), hold)
    oracle = np.where(upper, weight * sdk + (1 - weight) * hold, hold)
    limit = joint_table.column("max_effort")
    assert np.all(np.abs(oracle) < limit)
    np.testing.assert_allclose(sim.data.actuator_force, oracle, rtol=1e-9, atol=1e-9)


# --- command intake (CRC) ----------------------------------------------------------------------


def _wire_command(table, q: np.ndarray, kp: float, corrupt: bool) -> bytes:
    buf = np.zeros(LOWCMD_C.itemsize, np.uint8)
    v = lowcmd_view(buf)
    m = v["motor_cmd"]
    m["mode"][table.motor_indices] = 1
    m["q"][table.motor_indices] = q
    m["kp"][table.motor_indices] = kp
    v["crc"] = lowcmd_crc_c(buf) ^ (1 if corrupt else 0)
    return lowcmd_c_to_cdr(buf)


def test_when_crc_is_wrong_expect_command_dropped_counted_and_not_executed(sim, joint_table):
    robot = SimulatedG1(sim, domain_id=0)  # never started: commands go in through receive()
    hold = robot.mixer.law
    bad = _wire_command(joint_table, sim.home + 0.3, 40.0, corrupt=True)
    assert robot.receive(TOPIC_LOWCMD, bad) is False
    assert robot.receive(TOPIC_ARM_SDK, bad) is False
    assert robot.dropped_bad_crc == 2 and robot.accepted_lowcmd == 0 and robot.accepted_arm_sdk == 0
    assert robot.mixer.law is hold, "a dropped command changed what the motors do"
    good = _wire_command(joint_table, sim.home + 0.3, 40.0, corrupt=False)
    assert robot.receive(TOPIC_LOWCMD, good) is True
    assert robot.accepted_lowcmd == 1
    np.testing.assert_allclose(robot.mixer.law.u, 40.0 * (sim.home + 0.3).astype(np.float32), rtol=1e-6)
    assert robot.receive(TOPIC_LOWCMD, b"\x00\x01\x00\x00garbage") is False
    assert robot.stats().dropped_malformed == 1


# --- camera ------------------------------------------------------------------------------------


def _project(sim: G1Sim, point: np.ndarray) -> tuple[float, float]:
    """Pixel (column, row) of a world point in the head camera (independent pinhole model)."""
    m, d = sim.model, sim.data
    cam = m.camera(HEAD_CAMERA).id
    local = d.cam_xmat[cam].reshape(3, 3).T @ (point - d.cam_xpos[cam])  # camera looks along -z, y up
    h, w = sim.config.camera_height, sim.config.camera_width
    f = (h / 2) / np.tan(np.radians(m.cam_fovy[cam]) / 2)
    return w / 2 + f * local[0] / -local[2], h / 2 - f * local[1] / -local[2]


def _red(image: np.ndarray) -> np.ndarray:
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (r > 140) & (g < 70) & (b < 70)


def test_when_rendered_expect_the_red_block_where_it_projects_and_green_once_touched(sim):
    for _ in range(3):
        state = sim.reset()
        image = sim.render()
        assert image.shape == (sim.config.camera_height, sim.config.camera_width, 3) and image.dtype == np.uint8
        col, row = _project(sim, state.block_position)
        rows, cols = np.nonzero(_red(image))
        assert len(rows) >= 20, "the block is not visible"
        assert abs(cols.mean() - col) < 3 and abs(rows.mean() - row) < 3
    # Move the block behind the robot: no red left in view.
    b = sim.model.body(BLOCK_BODY).id
    adr = sim.model.jnt_qposadr[sim.model.body_jntadr[b]]
    sim.data.qpos[adr : adr + 3] = (-1.0, 0.0, 0.1)
    mujoco.mj_forward(sim.model, sim.data)
    assert not _red(sim.render()).any()


def test_when_a_snapshot_is_rendered_on_the_render_thread_expect_the_image_of_that_state(sim):
    frames = []
    done = threading.Event()

    def on_frame(frame):
        frames.append(frame)
        done.set()

    renderer = FrameRenderer(sim.model, sim.config.camera_width, sim.config.camera_height, on_frame).start()
    try:
        sim.step(CommandMixer(sim.table).law, 10)
        sim.task.success_time = 0.0  # touched: the renderer must draw the block green
        snapshot = Snapshot(sim.data.qpos.copy(), True, sim.time, 123.5, 7)
        renderer.submit(snapshot)
        assert done.wait(30), f"no frame rendered (error: {renderer.error})"
    finally:
        renderer.stop()
    frame = frames[0]
    assert (frame.sim_time, frame.stamp, frame.index) == (snapshot.sim_time, 123.5, 7)
    sim.model.geom("block").rgba = (0.1, 0.7, 0.2, 1.0)
    expected = sim.render()
    assert np.abs(frame.image.astype(int) - expected).max() <= 2
    assert not _red(frame.image).any() and (frame.image[..., 1] > 140).sum() >= 20  # a green block


# --- the task ----------------------------------------------------------------------------------


def test_when_reset_expect_block_in_region_at_rest_on_table_and_arm_home(sim, configs):
    _, task = configs
    poses = []
    waist = sim.table.index("waist_yaw_joint")
    for _ in range(20):
        # Whatever the last episode did to any joint, the next starts from the home pose.
        sim.data.qpos[sim.qadr[waist]] += 0.2
        sim.data.qpos[sim.qadr[sim.arm_rows]] -= 0.3
        state = sim.reset()
        np.testing.assert_allclose(sim.reading().q, sim.home, atol=1e-12)
        x, y, z = state.block_in_pelvis
        assert task.block_x[0] <= x <= task.block_x[1] and task.block_y[0] <= y <= task.block_y[1]
        assert z == pytest.approx(sim.layout.block_rest_z, abs=1e-6)
        assert state.at_home and not state.success and not state.done and state.episode_time == 0.0
        poses.append(state.block_in_pelvis)
    assert len({tuple(p.round(6)) for p in poses}) == 20
    again = G1Sim(*configs)
    for k in (3, 11):  # an episode's block pose is a function of (seed, episode) alone
        np.testing.assert_allclose(again.reset(episode=k).block_position, sim.reset(episode=k).block_position)


def test_when_the_hand_reaches_the_block_expect_success_latched_and_block_green(sim):
    state = sim.reset()
    assert not sim.task.update(sim.data)
    rows = sim.arm_rows
    before = sim.task_state().hand_block_distance
    assert before > 0.05
    # Put the block right under the hand sphere: touching.
    r = sim.model.geom_size[sim.task._hand_geom][0]
    b = sim.model.body(BLOCK_BODY).id
    adr = sim.model.jnt_qposadr[sim.model.body_jntadr[b]]
    sim.data.qpos[adr : adr + 3] = state.hand_position - (0.0, 0.0, r + sim.layout.block_size[2] / 2)
    mujoco.mj_forward(sim.model, sim.data)
    assert sim.task.update(sim.data) is True
    touched = sim.task_state()
    assert touched.success and touched.success_time == 0.0
    assert tuple(sim.model.geom("block").rgba[:3]) == pytest.approx((0.1, 0.7, 0.2))
    # The arm never left home, so the episode is also done at once.
    np.testing.assert_allclose(sim.reading().q[rows], sim.home[rows])
    assert touched.done and touched.done_time == 0.0
    assert sim.task.update(sim.data) is False  # latched: nothing changes any more
    fresh = sim.reset()
    assert not fresh.success and not fresh.done
    assert tuple(sim.model.geom("block").rgba[:3]) == pytest.approx((0.85, 0.08, 0.08))


def test_when_settings_are_bad_expect_errors_naming_them(configs):
    sim_config, task = configs
    for field, value in (("physics_rate_hz", 400.0), ("camera_width", 8), ("camera_fovy", 0.0), ("mode_machine", 256),
                         ("realtime_priority", 100)):
        with pytest.raises(ValueError, match=field):
            SimConfig(**{**sim_config.__dict__, field: value})
    for field, value in (("block_x", (0.4, 0.3)), ("success_distance", -1.0), ("seed", -1), ("block_yaw", (0, 9))):
        with pytest.raises(ValueError, match=field):
            TaskConfig(**{**task.__dict__, field: value})
    with pytest.raises(ValueError, match="nosuch"):
        load_sim_configs(nosuch=1)

