#!/usr/bin/env python3
"""Write this project's G1 URDF from a kinematics facts YAML.

The facts give, per link, mass, centre of mass and full inertia (and, for a few links, collision
primitives), and per joint its type, parent, child, origin xyz/rpy, axis and limits. Everything
in those facts is copied as is. The facts carry no meshes, so every link with real mass gets a
simple visual and collision shape sized from its mass and from where its child joint sits:

- a link branching into several massive children (pelvis, torso): a box with the same mass and
  diagonal inertia as the link, centred on its centre of mass;
- a link with one massive child: a cylinder from its origin to the child joint, radius from the
  link's mass at an assumed density; a sphere at the centre of mass when that cylinder's radius
  would exceed its length (short motor housings); limb radii are capped;
- a leaf (head, hands): a sphere at the centre of mass; a foot (a leaf whose facts list contact
  spheres): a box around those spheres and its origin.

Collision primitives listed in the facts replace the derived collision shape of their link.

Output is deterministic: the same facts give the same bytes. An existing output that differs is
kept unless --force is given.

    python scripts/make_urdf.py --kinematics g1_29dof_kinematics.yaml --out urdf/g1_29dof.urdf
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "urdf" / "g1_29dof.urdf"

# Links lighter than this are 1 g mesh carriers in the original description (pelvis shell, logo):
# they keep their inertial but get no shape, and do not count as a child when sizing shapes.
PLACEHOLDER_MASS = 0.01  # kg
# Assumed mean density for sizing derived shapes (about a human limb's); only the shapes' extents
# depend on it, never the dynamics.
SHAPE_DENSITY = 1000.0  # kg/m^3
# Mass-derived radii overshoot on motor-heavy limb segments. 9 cm across is about a G1 limb, and it
# keeps every shape clear of the others at the zero and default poses (tests/test_urdf.py).
MAX_LIMB_RADIUS = 0.045  # m
# Derived sizes are rounded to 0.1 mm so that the output does not hinge on libm's last bits.
SIZE_DECIMALS = 4
MATERIAL = ("g1_grey", "0.7 0.7 0.7 1")

SHAPES = ("box", "cylinder", "sphere")


def _f(x: float) -> str:
    return repr(float(x))


def _vec(v: list[float] | tuple[float, ...]) -> str:
    return " ".join(_f(x) for x in v)


def _size(x: float) -> float:
    return round(x, SIZE_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def _has_mass(link: dict[str, Any]) -> bool:
    return float(link.get("mass", 0.0)) >= PLACEHOLDER_MASS


def parse_facts(raw: bytes, path: Path) -> dict[str, Any]:
    """Parse and check a kinematics facts YAML (read from `path`): one tree of links joined by joints."""
    facts = yaml.safe_load(raw)
    if not isinstance(facts, dict) or not isinstance(facts.get("links"), dict) or not facts.get("joints"):
        raise ValueError(f"{path}: expected a mapping with 'links' (a mapping) and 'joints' (a list)")
    links: dict[str, Any] = {name: (body or {}) for name, body in facts["links"].items()}
    for name, link in links.items():
        if "mass" in link and not all(k in link for k in ("com_xyz", "inertia")):
            raise ValueError(f"{path}: link {name} has a mass but no com_xyz/inertia")
        for prim in link.get("collision_primitives", []):
            if prim.get("shape") not in SHAPES:
                raise ValueError(f"{path}: link {name}: shape {prim.get('shape')!r} is not one of {SHAPES}")
    seen_joints: set[str] = set()
    parent_of: dict[str, str] = {}
    for joint in facts["joints"]:
        name = joint.get("name")
        if name in seen_joints:
            raise ValueError(f"{path}: joint {name} is defined twice")
        seen_joints.add(name)
        if joint.get("type") not in ("revolute", "fixed"):
            raise ValueError(f"{path}: joint {name} type {joint.get('type')!r} is not revolute or fixed")
        for end in ("parent", "child"):
            if joint.get(end) not in links:
                raise ValueError(f"{path}: joint {name} {end} {joint.get(end)!r} is not a link")
        if joint["child"] in parent_of:
            raise ValueError(f"{path}: link {joint['child']} has two parent joints")
        parent_of[joint["child"]] = joint["parent"]
        if joint["type"] == "revolute":
            limit = joint.get("limit", {})
            if "axis" not in joint or not all(k in limit for k in ("lower", "upper", "effort", "velocity")):
                raise ValueError(f"{path}: joint {name} needs an axis and limit lower/upper/effort/velocity")
            if not float(limit["lower"]) < float(limit["upper"]):
                raise ValueError(f"{path}: joint {name} has lower >= upper")
    roots = [name for name in links if name not in parent_of]
    if len(roots) != 1:
        raise ValueError(f"{path}: expected exactly one root link, found {roots}")
    facts["links"] = links
    return facts


def _cylinder_between(length_vec: list[float], radius: float) -> dict[str, Any]:
    """A cylinder from the link origin to `length_vec`: URDF cylinders lie along their local z."""
    dx, dy, dz = length_vec
    length = math.sqrt(dx * dx + dy * dy + dz * dz)
    ux, uy, uz = dx / length, dy / length, dz / length
    if uz < 0:  # a cylinder is symmetric: point its axis upwards for readable angles
        ux, uy, uz = -ux, -uy, -uz
    # With yaw 0, Ry(pitch) @ Rx(roll) maps z to (sin p cos r, -sin r, cos p cos r).
    roll = -math.asin(max(-1.0, min(1.0, uy)))
    pitch = math.atan2(ux, uz)
    return {
        "shape": "cylinder",
        "radius": _size(radius),
        "length": _size(length),
        "xyz": [_size(dx / 2), _size(dy / 2), _size(dz / 2)],
        "rpy": [_size(roll), _size(pitch), 0.0],
    }


def _at_com(link: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    return {**shape, "xyz": [float(c) for c in link["com_xyz"]], "rpy": [0.0, 0.0, 0.0]}


def _sphere_at_com(link: dict[str, Any]) -> dict[str, Any]:
    radius = (3.0 * float(link["mass"]) / (4.0 * math.pi * SHAPE_DENSITY)) ** (1.0 / 3.0)
    return _at_com(link, {"shape": "sphere", "radius": _size(radius)})


def _inertia_box(link: dict[str, Any]) -> dict[str, Any]:
    """The uniform box with the link's mass and diagonal inertia (products are ignored)."""
    m = float(link["mass"])
    i = link["inertia"]
    ixx, iyy, izz = float(i["ixx"]), float(i["iyy"]), float(i["izz"])
    # For a box, ixx = m (ly^2 + lz^2) / 12 and so on; the max() guards against rounding below zero.
    sides = [
        math.sqrt(max(0.0, 6.0 * (a + b - c) / m))
        for a, b, c in ((iyy, izz, ixx), (ixx, izz, iyy), (ixx, iyy, izz))
    ]
    return _at_com(link, {"shape": "box", "size": [_size(s) for s in sides]})


def _box_around(prims: list[dict[str, Any]]) -> dict[str, Any]:
    """The axis-aligned box around the link origin and a set of spheres (a foot round its contacts)."""
    lo, hi = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    for p in prims:
        r = float(p.get("radius", 0.0))
        for k in range(3):
            lo[k] = min(lo[k], float(p["xyz"][k]) - r)
            hi[k] = max(hi[k], float(p["xyz"][k]) + r)
    return {
        "shape": "box",
        "size": [_size(h - lo_k) for lo_k, h in zip(lo, hi, strict=True)],
        "xyz": [_size((lo_k + h) / 2) for lo_k, h in zip(lo, hi, strict=True)],
        "rpy": [0.0] * 3,
    }


def derived_shape(
    link: dict[str, Any], child_joints: list[dict[str, Any]], links: dict[str, Any]
) -> dict[str, Any]:
    """The approximate shape standing in for a massive link's missing mesh (see the module docstring)."""
    massive = [j for j in child_joints if _has_mass(links[j["child"]])]
    if len(massive) > 1:
        return _inertia_box(link)
    if not massive:
        prims = link.get("collision_primitives", [])
        if prims and all(p["shape"] == "sphere" for p in prims):
            return _box_around(prims)
        return _sphere_at_com(link)
    offset = [float(c) for c in massive[0]["xyz"]]
    length = math.sqrt(sum(c * c for c in offset))
    radius = math.sqrt(float(link["mass"]) / (math.pi * SHAPE_DENSITY * length)) if length > 0 else math.inf
    if length < radius:
        sphere = _sphere_at_com(link)
        return {**sphere, "radius": min(sphere["radius"], MAX_LIMB_RADIUS)}
    return _cylinder_between(offset, min(radius, MAX_LIMB_RADIUS))


def _origin(parent: ET.Element, xyz: list[float], rpy: list[float]) -> None:
    ET.SubElement(parent, "origin", xyz=_vec(xyz), rpy=_vec(rpy))


def _geometry(parent: ET.Element, shape: dict[str, Any]) -> None:
    geometry = ET.SubElement(parent, "geometry")
    if shape["shape"] == "box":
        ET.SubElement(geometry, "box", size=_vec(shape["size"]))
    elif shape["shape"] == "cylinder":
        ET.SubElement(geometry, "cylinder", radius=_f(shape["radius"]), length=_f(shape["length"]))
    else:
        ET.SubElement(geometry, "sphere", radius=_f(shape["radius"]))


def _link_element(
    robot: ET.Element,
    name: str,
    link: dict[str, Any],
    child_joints: list[dict[str, Any]],
    links: dict[str, Any],
) -> None:
    elem = ET.SubElement(robot, "link", name=name)
    if "mass" not in link:
        return  # a pure frame (camera, IMU, lidar): no inertial, so MuJoCo gives it zero mass
    inertial = ET.SubElement(elem, "inertial")
    _origin(inertial, link["com_xyz"], [0.0, 0.0, 0.0])
    ET.SubElement(inertial, "mass", value=_f(link["mass"]))
    i = link["inertia"]
    ET.SubElement(inertial, "inertia", **{k: _f(i[k]) for k in ("ixx", "ixy", "ixz", "iyy", "iyz", "izz")})
    if not _has_mass(link):
        return
    shape = derived_shape(link, child_joints, links)
    visual = ET.SubElement(elem, "visual", name=f"{name}_visual")
    _origin(visual, shape["xyz"], shape["rpy"])
    _geometry(visual, shape)
    ET.SubElement(visual, "material", name=MATERIAL[0])
    for k, prim in enumerate(link.get("collision_primitives") or [shape]):
        collision = ET.SubElement(elem, "collision", name=f"{name}_collision_{k}")
        _origin(collision, prim["xyz"], prim.get("rpy", [0.0, 0.0, 0.0]))
        _geometry(collision, prim)


def _joint_element(robot: ET.Element, joint: dict[str, Any]) -> None:
    elem = ET.SubElement(robot, "joint", name=joint["name"], type=joint["type"])
    _origin(elem, joint.get("xyz", [0.0, 0.0, 0.0]), joint.get("rpy", [0.0, 0.0, 0.0]))
    ET.SubElement(elem, "parent", link=joint["parent"])
    ET.SubElement(elem, "child", link=joint["child"])
    if joint["type"] == "revolute":
        ET.SubElement(elem, "axis", xyz=_vec(joint["axis"]))
        limit = joint["limit"]
        ET.SubElement(elem, "limit", **{k: _f(limit[k]) for k in ("lower", "upper", "effort", "velocity")})


def build_urdf(facts: dict[str, Any], robot_name: str, facts_name: str, facts_sha256: str) -> str:
    links = facts["links"]
    children: dict[str, list[dict[str, Any]]] = {name: [] for name in links}
    for joint in facts["joints"]:
        children[joint["parent"]].append(joint)

    robot = ET.Element("robot", name=robot_name)
    # MuJoCo's URDF import fuses fixed-joint children into their parent and drops visuals by default;
    # keeping both makes d435_link, imu_in_torso and the other frames bodies that mj_name2id finds.
    # inertiafromgeom="false": masses come only from <inertial>, as in URDF, never from the shapes.
    mujoco = ET.SubElement(robot, "mujoco")
    ET.SubElement(
        mujoco, "compiler", angle="radian", discardvisual="false", fusestatic="false", inertiafromgeom="false"
    )
    material = ET.SubElement(robot, "material", name=MATERIAL[0])
    ET.SubElement(material, "color", rgba=MATERIAL[1])
    for name, link in links.items():
        _link_element(robot, name, link, children[name], links)
    for joint in facts["joints"]:
        _joint_element(robot, joint)
    ET.indent(robot, space="  ")

    # "--" may not appear inside an XML comment.
    source = " ".join(str(facts.get("source", "")).split()).replace("--", "-")
    with_prims = ", ".join(n for n, link in links.items() if link.get("collision_primitives")) or "none"
    frames = ", ".join(n for n, link in links.items() if "mass" not in link) or "none"
    paragraphs = [
        f"{robot_name}: generated by scripts/make_urdf.py; do not edit, regenerate.",
        f"From {facts_name} (sha256 {facts_sha256[:16]}): {source}",
        "Units: m, kg, kg*m^2, rad, rad/s, N*m.",
        "Exact (copied from the facts): link masses, centres of mass, inertias, joint origins, axes and"
        f" limits, and the collision primitives the facts list (links: {with_prims}).",
        "Approximate: every other visual and collision shape. There are no meshes; boxes, cylinders and"
        " spheres are sized from each link's mass and child joint positions (see the script).",
        f"Pure frames, no inertial: {frames}.",
    ]
    body = "\n".join(textwrap.fill(p, 100, initial_indent="  ", subsequent_indent="    ") for p in paragraphs)
    header = f"<!--\n{body}\n-->\n"
    return '<?xml version="1.0"?>\n' + header + ET.tostring(robot, encoding="unicode") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinematics", type=Path, required=True, help="kinematics facts YAML")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="URDF to write (urdf/g1_29dof.urdf)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing, different output file")
    args = parser.parse_args(argv)

    raw = args.kinematics.read_bytes()
    try:
        facts = parse_facts(raw, args.kinematics)
    except (ValueError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = build_urdf(facts, args.out.stem, args.kinematics.name, hashlib.sha256(raw).hexdigest())
    if args.out.exists():
        if args.out.read_text() == text:
            print(f"{args.out} is up to date")
            return 0
        if not args.force:
            print(f"error: refusing to overwrite {args.out}: it differs from what {args.kinematics} gives; "
                  "pass --force to replace it", file=sys.stderr)
            return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
