"""The simulated G1 and its task as a plain object: the caller steps it (no threads, no DDS, no ROS).

`step(law)` runs physics steps under a MotorLaw (g1.robot_side): per step and per motor,
effort = clip(u - kp*q - kd*dq + hold*gravity, +-max_effort), with `gravity` the joint-space
gravity (and Coriolis) torque of the current state, so the built-in hold keeps its pose like the
robot's own controller does. Commands from DDS (simulator.SimulatedG1) and from an in-process
limiter (harness.py) both arrive as such a law.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from dit4dit_policy.g1.robot_side import MotorLaw, Reading
from dit4dit_policy.joint_table import JointTable, load_joint_table
from dit4dit_policy.sim.camera import OffscreenCamera
from dit4dit_policy.sim.config import SimConfig, TaskConfig, load_sim_configs
from dit4dit_policy.sim.scene import HEAD_CAMERA, ROBOT_BASE, Layout, build_model
from dit4dit_policy.sim.task import ReachTouchTask, TaskState

RIGHT_ARM = tuple(
    f"right_{n}_joint"
    for n in ("shoulder_pitch", "shoulder_roll", "shoulder_yaw", "elbow", "wrist_roll", "wrist_pitch", "wrist_yaw")
)


def _rpy(quat: np.ndarray) -> tuple[float, float, float]:
    w, x, y, z = quat
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


def sim_model(config: SimConfig, table: JointTable, layout: Layout | None = None) -> mujoco.MjModel:
    """The scene model for these settings (what G1Sim steps; a renderer elsewhere needs the same)."""
    return build_model(
        table,
        fixed_base=config.fixed_base,
        timestep=config.timestep,
        camera_width=config.camera_width,
        camera_height=config.camera_height,
        camera_fovy=config.camera_fovy,
        layout=layout,
    )


class G1Sim:
    """The G1 in the table scene with the reach-and-touch task."""

    def __init__(
        self,
        config: SimConfig | None = None,
        task: TaskConfig | None = None,
        table: JointTable | None = None,
        layout: Layout | None = None,
    ) -> None:
        if config is None or task is None:
            loaded_config, loaded_task = load_sim_configs()
            config, task = config or loaded_config, task or loaded_task
        self.config = config
        self.table = table or load_joint_table()
        self.layout = layout or Layout()
        c = self.config
        self.model = sim_model(c, self.table, self.layout)
        self.data = mujoco.MjData(self.model)
        m = self.model
        joints = [m.joint(name).id for name in self.table.names]
        self.qadr = m.jnt_qposadr[joints]
        self.dadr = m.jnt_dofadr[joints]
        self.arm_rows = np.array([self.table.index(n) for n in RIGHT_ARM])
        self.home = self.table.column("default_position")
        self.task = ReachTouchTask(
            m, task, self.layout, self.qadr[self.arm_rows], self.dadr[self.arm_rows],
            self.home[self.arm_rows],
        )
        self._base_qadr = None if c.fixed_base else m.jnt_qposadr[m.body_jntadr[m.body(ROBOT_BASE).id]]
        self._sensor = {name: m.sensor_adr[m.sensor(name).id] for name in ("imu_quat", "imu_gyro", "imu_acc")}
        self._law: MotorLaw | None = None
        self._camera: OffscreenCamera | None = None
        self.data.qpos[self.qadr] = self.home  # power on in the home pose, where reset() puts it back
        self.reset()

    # Episodes ---------------------------------------------------------------------------------
    def reset(self, episode: int | None = None) -> TaskState:
        """Next episode (or `episode`): every joint at the home pose (with a floating base, the base
        at its start pose too: the robot may have fallen), everything at rest, the block at a new
        random pose. Simulation time runs on (stamps stay monotonic).

        Whoever drives the robot re-engages from this pose (sim_session.Stack.new_episode: the
        bridge's start-up ramp from the measured pose). Joints left where the last episode put
        them would drift from episode to episode: each re-engagement holds the waist where it
        sagged to, and it sags further from there.
        """
        d = self.data
        t = d.time
        d.qvel[:] = 0.0
        d.qacc_warmstart[:] = 0.0
        d.qpos[self.qadr] = self.home
        if self._base_qadr is not None:
            a = self._base_qadr
            d.qpos[a : a + 3] = (0.0, 0.0, self.layout.pelvis_height)
            d.qpos[a + 3 : a + 7] = (1.0, 0.0, 0.0, 0.0)
        self.task.place_block(d, self.task.episode + 1 if episode is None else episode)
        d.time = t
        mujoco.mj_forward(self.model, d)
        return self.task.state(d)

    def task_state(self) -> TaskState:
        return self.task.state(self.data)

    # Physics ----------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        return float(self.data.time)

    def step(self, law: MotorLaw, n: int = 1) -> bool:
        """n physics steps under `law`; True if the task's success or done latched during them."""
        m, d = self.model, self.data
        if law is not self._law:  # the gains change only with a new command
            m.actuator_biasprm[:, 1] = -law.kp
            m.actuator_biasprm[:, 2] = -law.kd
            self._law = law
        changed = False
        for _ in range(n):
            mujoco.mj_step1(m, d)  # positions and velocities: qfrc_bias of this state
            d.ctrl[:] = law.u + law.hold * d.qfrc_bias[self.dadr]
            mujoco.mj_step2(m, d)
            changed |= self.task.update(d)
        return changed

    def reading(self) -> Reading:
        """Joint state (table order), applied motor torques and the pelvis IMU."""
        d, s = self.data, self._sensor
        quat = d.sensordata[s["imu_quat"] : s["imu_quat"] + 4].copy()
        return Reading(
            q=d.qpos[self.qadr].copy(),
            dq=d.qvel[self.dadr].copy(),
            tau=d.actuator_force.copy(),
            quaternion=tuple(quat),
            gyroscope=tuple(d.sensordata[s["imu_gyro"] : s["imu_gyro"] + 3]),
            accelerometer=tuple(d.sensordata[s["imu_acc"] : s["imu_acc"] + 3]),
            rpy=_rpy(quat),
        )

    # Camera -----------------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """The head camera image now, (camera_height, camera_width, 3) uint8 RGB, on the calling thread."""
        if self._camera is None:
            self._camera = OffscreenCamera(self.model, HEAD_CAMERA, self.config.camera_width, self.config.camera_height)
        return self._camera.render(self.data)

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None
