"""The committed G1 URDF: MuJoCo loads it, it agrees with the joint table, and its generator behaves."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import numpy as np
import pytest

from dit4dit_policy.config import package_share
from dit4dit_policy.joint_table import load_joint_table

URDF = package_share() / "urdf" / "g1_29dof.urdf"
MAKE_URDF = Path(__file__).resolve().parent.parent / "scripts" / "make_urdf.py"
PRIMITIVES = {"box", "cylinder", "sphere"}
# Links lighter than this are mesh carriers without a shape (scripts/make_urdf.py PLACEHOLDER_MASS).
PLACEHOLDER_MASS = 0.01
FIXED_FRAMES = ("d435_link", "imu_in_torso", "imu_in_pelvis", "mid360_link")


@pytest.fixture(scope="module")
def robot() -> ET.Element:
    return ET.parse(URDF).getroot()


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(URDF))


def _data_at(model: mujoco.MjModel, qpos: np.ndarray) -> mujoco.MjData:
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_forward(model, data)
    return data


def _revolute(robot: ET.Element) -> dict[str, ET.Element]:
    return {j.get("name"): j for j in robot.findall("joint") if j.get("type") == "revolute"}


def _mass(link: ET.Element) -> float:
    mass = link.find("inertial/mass")
    return 0.0 if mass is None else float(mass.get("value"))


def test_when_loaded_in_mujoco_expect_29_hinges_in_dds_motor_order(model, joint_table):
    assert model.njnt == 29
    assert np.all(model.jnt_type == mujoco.mjtJoint.mjJNT_HINGE)
    assert tuple(model.joint(i).name for i in range(model.njnt)) == joint_table.names


def test_when_masses_summed_expect_mujoco_total_equal_and_g1_sized(robot, model):
    urdf_total = sum(_mass(link) for link in robot.findall("link"))
    assert mujoco.mj_getTotalmass(model) == pytest.approx(urdf_total, rel=1e-12)
    assert 30.0 < urdf_total < 40.0


def test_when_loaded_expect_every_link_including_fixed_frames_is_a_body(robot, model):
    links = {link.get("name") for link in robot.findall("link")}
    bodies = {model.body(i).name for i in range(1, model.nbody)}
    assert bodies == links
    assert set(FIXED_FRAMES) <= bodies
    assert model.body(model.body("d435_link").parentid[0]).name == "torso_link"


def test_when_q_zero_expect_head_camera_above_pelvis_looking_forward_and_down(model):
    data = _data_at(model, np.zeros(model.nq))
    camera = data.body("d435_link")
    assert camera.xpos[2] - data.body("pelvis").xpos[2] > 0.3
    optical_axis = camera.xmat.reshape(3, 3)[:, 0]  # the RealSense link frame looks along its x
    assert optical_axis[0] > 0.5 and optical_axis[2] < -0.5


def test_when_q_zero_expect_left_limbs_at_plus_y_and_feet_below_pelvis(model, joint_table):
    data = _data_at(model, np.zeros(model.nq))
    for joint in joint_table.in_groups("arm", "leg"):
        side = 1.0 if joint.name.startswith("left_") else -1.0
        assert side * data.joint(joint.name).xanchor[1] > 0.05, joint.name
    for foot in ("left_ankle_roll_link", "right_ankle_roll_link"):
        assert data.body(foot).xpos[2] < data.body("pelvis").xpos[2] - 0.6


@pytest.mark.parametrize("pose", ["zero", "default"])
def test_when_standing_pose_expect_no_self_contact(model, joint_table, pose):
    # The URDF root is welded to the world here, so even pelvis-child pairs are checked.
    qpos = np.zeros(model.nq) if pose == "zero" else joint_table.column("default_position")
    data = _data_at(model, qpos)
    touching = [(model.geom(c.geom1).name, model.geom(c.geom2).name) for c in data.contact[: data.ncon]]
    assert touching == []


def test_when_link_has_mass_expect_primitive_visual_and_collision(robot):
    for link in robot.findall("link"):
        name = link.get("name")
        shapes = {kind: link.findall(f"{kind}/geometry/*") for kind in ("visual", "collision")}
        if _mass(link) >= PLACEHOLDER_MASS:
            for kind, geoms in shapes.items():
                assert geoms, f"{name} has no {kind} geometry"
                assert {g.tag for g in geoms} <= PRIMITIVES, name
        if name in FIXED_FRAMES:
            assert link.find("inertial") is None and not any(shapes.values()), name


def test_when_limb_drawn_as_cylinder_expect_it_spans_link_origin_to_child_origin(model):
    data = _data_at(model, np.zeros(model.nq))
    visual_cylinders = [
        g for g in range(model.ngeom)
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CYLINDER and model.geom_contype[g] == 0
    ]
    assert len(visual_cylinders) >= 10  # thighs, shins, upper arms, forearms at least
    for g in visual_cylinders:
        body = model.geom_bodyid[g]
        half = data.geom_xmat[g].reshape(3, 3)[:, 2] * model.geom_size[g][1]
        ends = [data.geom_xpos[g] - half, data.geom_xpos[g] + half]
        children = [data.xpos[b] for b in range(model.nbody) if model.body_parentid[b] == body]
        origin = data.xpos[body]
        # Derived sizes are rounded to 0.1 mm in the generator.
        spans = [
            np.allclose(a, origin, atol=5e-4) and any(np.allclose(b, c, atol=5e-4) for c in children)
            for a, b in (ends, ends[::-1])
        ]
        assert any(spans), model.geom(g).name


def test_when_compared_with_joint_table_expect_same_joints_and_limits(robot, model, joint_table):
    revolute = _revolute(robot)
    assert set(revolute) == set(joint_table.names)
    for joint in joint_table.joints:
        limit = revolute[joint.name].find("limit")
        expected = {
            "lower": joint.limits.min_position,
            "upper": joint.limits.max_position,
            "velocity": joint.limits.max_velocity,
            "effort": joint.limits.max_effort,
        }
        for attr, value in expected.items():
            assert float(limit.get(attr)) == pytest.approx(value, rel=1e-12, abs=0), f"{joint.name} {attr}"
        np.testing.assert_allclose(
            model.joint(joint.name).range, [expected["lower"], expected["upper"]], rtol=1e-12
        )


@pytest.mark.parametrize("variant", ["g1_23dof", "g1_29dof_waist_locked"])
def test_when_variant_table_loaded_expect_each_joint_revolute_in_urdf(robot, variant):
    missing = set(load_joint_table(variant).names) - set(_revolute(robot))
    assert not missing


TINY_FACTS = """\
source: two-link test arm
links:
  base:
    mass: 1.0
    com_xyz: [0.0, 0.0, 0.0]
    inertia: {ixx: 0.01, ixy: 0.0, ixz: 0.0, iyy: 0.01, iyz: 0.0, izz: 0.01}
  arm:
    mass: 0.5
    com_xyz: [0.0, 0.0, -0.1]
    inertia: {ixx: 0.002, ixy: 0.0, ixz: 0.0, iyy: 0.002, iyz: 0.0, izz: 0.0005}
  tip_frame: {}
joints:
- name: shoulder_joint
  type: revolute
  parent: base
  child: arm
  xyz: [0.0, 0.0, -0.05]
  rpy: [0.0, 0.0, 0.0]
  axis: [0.0, 1.0, 0.0]
  limit: {lower: -1.0, upper: 1.5, effort: 10.0, velocity: 5.0}
- name: tip_joint
  type: fixed
  parent: arm
  child: tip_frame
  xyz: [0.0, 0.0, -0.2]
  rpy: [0.0, 0.0, 0.0]
"""


def _make_urdf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(MAKE_URDF), *args], capture_output=True, text=True, timeout=60)


def test_when_generator_run_on_tiny_facts_expect_loadable_deterministic_urdf(tmp_path):
    facts = tmp_path / "tiny.yaml"
    facts.write_text(TINY_FACTS)
    first, second = tmp_path / "a" / "tiny.urdf", tmp_path / "b" / "tiny.urdf"
    for out in (first, second):
        assert _make_urdf("--kinematics", str(facts), "--out", str(out)).returncode == 0
    assert first.read_bytes() == second.read_bytes()

    model = mujoco.MjModel.from_xml_path(str(first))
    assert model.njnt == 1 and model.jnt_type[0] == mujoco.mjtJoint.mjJNT_HINGE
    np.testing.assert_allclose(model.joint("shoulder_joint").range, [-1.0, 1.5])
    assert mujoco.mj_getTotalmass(model) == pytest.approx(1.5)
    assert model.body("tip_frame").parentid[0] == model.body("arm").id


def test_when_output_differs_expect_refusal_naming_file_unless_forced(tmp_path):
    facts = tmp_path / "tiny.yaml"
    facts.write_text(TINY_FACTS)
    out = tmp_path / "tiny.urdf"
    out.write_text("<robot name='hand_edited'/>\n")

    refused = _make_urdf("--kinematics", str(facts), "--out", str(out))
    assert refused.returncode != 0
    assert str(out) in refused.stderr
    assert out.read_text() == "<robot name='hand_edited'/>\n"

    assert _make_urdf("--kinematics", str(facts), "--out", str(out), "--force").returncode == 0
    assert mujoco.MjModel.from_xml_path(str(out)).njnt == 1
    assert _make_urdf("--kinematics", str(facts), "--out", str(out)).returncode == 0


def test_when_facts_name_a_missing_link_expect_error_naming_it(tmp_path):
    facts = tmp_path / "broken.yaml"
    facts.write_text(TINY_FACTS.replace("child: arm", "child: forearm"))
    result = _make_urdf("--kinematics", str(facts), "--out", str(tmp_path / "broken.urdf"))
    assert result.returncode != 0
    assert "forearm" in result.stderr
    assert not (tmp_path / "broken.urdf").exists()
