"""The MuJoCo scene: the G1 from urdf/g1_29dof.urdf, a table, a block, the head camera, motor actuators.

Built with MjSpec from the committed URDF (no second robot description):
- base: the pelvis fixed on a stand (upper-body manipulation; the URDF's root is welded to the
  world when loaded), or free-floating (a free joint added to the pelvis; there is no balance
  controller, so the robot falls unless a whole-body policy balances it);
- one `general` actuator per joint of the joint table, in table order, whose force is
  ctrl - kp*q - kd*qdot, clamped to the joint's max_effort (forcerange). The simulator sets
  ctrl, kp and kd every physics step from the robot's motor law (g1.robot_side.MotorLaw), so the
  PD runs inside the physics step at the physics rate, with the damping term integrated
  implicitly (implicitfast) - stable for the light wrist links at 500 Hz;
- joint armature (motor rotor inertia through the gearbox) and viscous damping of the order of
  the G1's motors; not identified on a robot;
- self-collision: the URDF's primitive collision shapes of links two joints apart overlap over
  much of their range (parent-child pairs MuJoCo filters by itself), so those pairs are excluded;
  everything else collides (a hand can hit the torso, the table or the block);
- the head camera `head_camera` on the `d435_link` frame (the RealSense link frame looks along
  its x axis, z up);
- an IMU site on `imu_in_pelvis` with quaternion, gyro and accelerometer sensors;
- `hand_point`, the centre of the right hand's collision sphere: where the hand touches.

All positions in `Layout` are in the pelvis frame of the fixed robot (x forward, y left, z up):
the task and the expert reason in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from dit4dit_policy.config import package_share
from dit4dit_policy.joint_table import JointTable

URDF_NAME = "g1_29dof.urdf"
HEAD_CAMERA = "head_camera"
HAND_SITE = "hand_point"
HAND_BODY = "right_rubber_hand"
IMU_BODY = "imu_in_pelvis"
BLOCK_BODY = "block"
BLOCK_GEOM = "block"
ROBOT_BASE = "pelvis"
BLOCK_RGBA = (0.85, 0.08, 0.08, 1.0)  # red until touched
TOUCHED_RGBA = (0.1, 0.7, 0.2, 1.0)  # green once the task's success is latched: the image shows it
# Geom groups: the URDF loader puts robot collision shapes in 0 and visual shapes (the same
# primitives) in 1; the environment goes in 2. Cameras draw 1 and 2.
ENV_GROUP = 2
VISIBLE_GROUPS = (1, ENV_GROUP)


@dataclass(frozen=True)
class Layout:
    """Where things are (m, pelvis frame of the fixed robot; world = pelvis + (0, 0, pelvis_height))."""

    pelvis_height: float = 0.80  # fixed base: feet 1.6 cm above the floor
    table_top: float = -0.03  # a 0.77 m table
    table_front: float = 0.27  # clear of the hand at the home pose (its front at x = 0.217)
    table_depth: float = 0.5
    table_width: float = 0.9
    table_thickness: float = 0.04
    block_size: tuple[float, float, float] = (0.05, 0.05, 0.05)
    block_mass: float = 0.1  # kg

    @property
    def block_rest_z(self) -> float:
        """Block centre height when it sits on the table."""
        return self.table_top + self.block_size[2] / 2


# Motor constants: (armature kg*m^2, damping N*m*s/rad) by the joint's effort class.
def _motor_constants(max_effort: float) -> tuple[float, float]:
    if max_effort >= 80:
        return 0.025, 0.5
    if max_effort >= 20:
        return 0.01, 0.3
    return 0.004, 0.1


def urdf_path() -> str:
    return str(package_share() / "urdf" / URDF_NAME)


def robot_spec() -> mujoco.MjSpec:
    """The URDF as loaded by MuJoCo, plus the hand point site (the expert's kinematic model too)."""
    spec = mujoco.MjSpec.from_file(urdf_path())
    hand = spec.body(HAND_BODY)
    sphere = next(g for g in hand.geoms if g.type == mujoco.mjtGeom.mjGEOM_SPHERE and g.contype)
    hand.add_site(name=HAND_SITE, pos=sphere.pos)
    return spec


def hand_radius(model: mujoco.MjModel) -> float:
    """Radius of the right hand's collision sphere."""
    body = model.body(HAND_BODY).id
    return float(max(model.geom_size[g][0] for g in range(model.ngeom)
                     if model.geom_bodyid[g] == body and model.geom_contype[g]))


def build_model(
    table: JointTable,
    *,
    fixed_base: bool,
    timestep: float,
    camera_width: int,
    camera_height: int,
    camera_fovy: float,
    layout: Layout | None = None,
) -> mujoco.MjModel:
    """The simulation model. Actuator i drives table joint i."""
    lay = layout or Layout()
    if not (np.isfinite(timestep) and 0 < timestep <= 0.002):
        raise ValueError(f"timestep must be in (0, 0.002] s (physics at 500 Hz or faster), got {timestep!r}")
    if not (0 < camera_fovy < 180):
        raise ValueError(f"camera_fovy must be in (0, 180) degrees, got {camera_fovy!r}")
    spec = robot_spec()
    spec.modelname = "g1_sim"
    spec.option.timestep = timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # Rendering cost on a CPU rasteriser is dominated by multisampling: off (measured 13 -> 5 ms per frame).
    spec.visual.quality.offsamples = 0
    spec.visual.global_.offwidth = max(camera_width, 64)
    spec.visual.global_.offheight = max(camera_height, 64)
    spec.visual.headlight.ambient = (0.35, 0.35, 0.35)
    spec.visual.headlight.diffuse = (0.5, 0.5, 0.5)

    urdf_joints = [j.name for j in spec.joints]
    if set(urdf_joints) != set(table.names):
        raise ValueError(
            f"{URDF_NAME} joints and the {table.variant} joint table differ: "
            f"only in the URDF {sorted(set(urdf_joints) - set(table.names))}, "
            f"only in the table {sorted(set(table.names) - set(urdf_joints))}"
        )

    pelvis = spec.body(ROBOT_BASE)
    pelvis.pos = (0.0, 0.0, lay.pelvis_height)
    if not fixed_base:
        pelvis.add_freejoint(name="floating_base")
    _exclude_links_two_joints_apart(spec)
    for joint in table.joints:
        armature, damping = _motor_constants(joint.limits.max_effort)
        j = spec.joint(joint.name)
        j.armature, j.damping = armature, [damping, 0.0, 0.0]  # linear term; no polynomial damping
        spec.add_actuator(
            name=joint.name,
            target=joint.name,
            trntype=mujoco.mjtTrn.mjTRN_JOINT,
            gaintype=mujoco.mjtGain.mjGAIN_FIXED,
            gainprm=[1.0] + [0.0] * 9,
            biastype=mujoco.mjtBias.mjBIAS_AFFINE,
            biasprm=[0.0] * 10,
            forcelimited=True,
            forcerange=(-joint.limits.max_effort, joint.limits.max_effort),
        )

    spec.body("d435_link").add_camera(name=HEAD_CAMERA, xyaxes=[0, -1, 0, 0, 0, 1], fovy=camera_fovy)
    imu = spec.body(IMU_BODY).add_site(name="imu")
    for kind, name in (
        (mujoco.mjtSensor.mjSENS_FRAMEQUAT, "imu_quat"),
        (mujoco.mjtSensor.mjSENS_GYRO, "imu_gyro"),
        (mujoco.mjtSensor.mjSENS_ACCELEROMETER, "imu_acc"),
    ):
        spec.add_sensor(name=name, type=kind, objtype=mujoco.mjtObj.mjOBJ_SITE, objname=imu.name)

    _add_environment(spec, lay, fixed_base)
    return spec.compile()


def _exclude_links_two_joints_apart(spec: mujoco.MjSpec) -> None:
    for body in spec.bodies:
        parent = body.parent
        if parent is None or parent.name == "world":
            continue
        grandparent = parent.parent
        if grandparent is not None and grandparent.name != "world":
            spec.add_exclude(bodyname1=grandparent.name, bodyname2=body.name)


def _add_environment(spec: mujoco.MjSpec, lay: Layout, fixed_base: bool) -> None:
    world = spec.worldbody
    z0 = lay.pelvis_height
    # No shadows: on a CPU rasteriser the shadow map costs 25x the rest of a frame (measured 45 vs 1.8 ms).
    world.add_light(name="sun", pos=(0.3, 0.0, 3.0), dir=(0.0, 0.0, -1.0), type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                    diffuse=(0.6, 0.6, 0.6), castshadow=False)
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=(3, 3, 0.1), rgba=(0.55, 0.55, 0.52, 1),
                   group=ENV_GROUP)
    no_contact = {"contype": 0, "conaffinity": 0, "group": ENV_GROUP}
    if fixed_base:  # the stand: a post behind the robot holding the pelvis (drawn, never touched)
        post = (0.03, 0.03, (z0 - 0.05) / 2)
        world.add_geom(name="stand_post", type=mujoco.mjtGeom.mjGEOM_BOX, size=post,
                       pos=(-0.2, 0.0, post[2]), rgba=(0.2, 0.2, 0.22, 1), **no_contact)
        world.add_geom(name="stand_arm", type=mujoco.mjtGeom.mjGEOM_BOX, size=(0.08, 0.02, 0.02),
                       pos=(-0.12, 0.0, z0 - 0.07), rgba=(0.2, 0.2, 0.22, 1), **no_contact)
    top = z0 + lay.table_top
    half = (lay.table_depth / 2, lay.table_width / 2, lay.table_thickness / 2)
    cx = lay.table_front + half[0]
    wood = (0.62, 0.5, 0.36, 1)
    world.add_geom(name="table_top", type=mujoco.mjtGeom.mjGEOM_BOX, size=half,
                   pos=(cx, 0.0, top - half[2]), rgba=wood, group=ENV_GROUP)
    leg_h = (top - lay.table_thickness) / 2
    for sx in (-1, 1):
        for sy in (-1, 1):
            world.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=(0.02, 0.02, leg_h),
                           pos=(cx + sx * (half[0] - 0.03), sy * (half[1] - 0.03), leg_h), rgba=wood, **no_contact)
    block = world.add_body(name=BLOCK_BODY, pos=(lay.table_front + 0.1, 0.0, z0 + lay.block_rest_z))
    block.add_freejoint(name="block")
    # The URDF's compiler settings take inertias from the inertial elements, never from geoms.
    sx, sy, sz = lay.block_size
    m = lay.block_mass
    block.explicitinertial = True
    block.ipos, block.iquat = (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0)  # unset, ipos would copy the body's pos
    block.mass = m
    block.inertia = (m * (sy * sy + sz * sz) / 12, m * (sx * sx + sz * sz) / 12, m * (sx * sx + sy * sy) / 12)
    block.add_geom(name=BLOCK_GEOM, type=mujoco.mjtGeom.mjGEOM_BOX, size=(sx / 2, sy / 2, sz / 2),
                   rgba=BLOCK_RGBA, friction=(1.0, 0.005, 0.0001), group=ENV_GROUP)
