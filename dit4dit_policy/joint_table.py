"""The G1 joint table (config/g1_29dof.yaml) as frozen, validated data.

Every module that needs joint names, motor slots, limits or gains reads them from here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dit4dit_policy.config import load_yaml

GROUPS = ("leg", "waist", "arm", "hand")
DEFAULT_TABLE = "g1_29dof.yaml"
DEFAULT_VARIANT = "g1_29dof"


@dataclass(frozen=True)
class JointLimits:
    """ros2_control `joint_limits` fields for one joint (rad, rad/s, rad/s^2, N*m)."""

    min_position: float
    max_position: float
    max_velocity: float
    max_acceleration: float
    max_effort: float
    has_position_limits: bool = True
    has_velocity_limits: bool = True
    has_acceleration_limits: bool = True
    has_effort_limits: bool = True


@dataclass(frozen=True)
class Joint:
    name: str
    motor_index: int
    group: str
    limits: JointLimits
    kp: float
    kd: float
    default_position: float


@dataclass(frozen=True)
class JointTable:
    """The joints present on one robot variant, in DDS motor order."""

    variant: str
    joints: tuple[Joint, ...]
    soft_margin: float
    command_max_velocity: dict[str, float]
    num_motor_slots: int
    source_hash: str = field(compare=False)

    def __post_init__(self) -> None:
        names = [j.name for j in self.joints]
        if len(set(names)) != len(names):
            raise ValueError(f"joint table {self.variant}: duplicate joint names")
        slots = [j.motor_index for j in self.joints]
        if len(set(slots)) != len(slots):
            raise ValueError(f"joint table {self.variant}: duplicate motor_index")
        if any(not 0 <= s < self.num_motor_slots for s in slots):
            raise ValueError(f"joint table {self.variant}: motor_index outside 0..{self.num_motor_slots - 1}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def motor_indices(self) -> np.ndarray:
        return np.array([j.motor_index for j in self.joints], dtype=np.int64)

    def index(self, name: str) -> int:
        """Row of a joint in this table; KeyError naming the joint if it is not here."""
        for i, j in enumerate(self.joints):
            if j.name == name:
                return i
        raise KeyError(f"joint {name!r} is not in the {self.variant} joint table")

    def in_groups(self, *groups: str) -> tuple[Joint, ...]:
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown joint group(s) {sorted(unknown)}; known: {GROUPS}")
        return tuple(j for j in self.joints if j.group in groups)

    def column(self, attr: str) -> np.ndarray:
        """One attribute of every joint as a float array, e.g. column('kp') or column('max_effort')."""
        if attr in JointLimits.__dataclass_fields__:
            return np.array([getattr(j.limits, attr) for j in self.joints], dtype=np.float64)
        return np.array([getattr(j, attr) for j in self.joints], dtype=np.float64)

    def command_velocity_limits(self) -> np.ndarray:
        """Per-joint velocity ceiling for commanded targets: min(hardware, group ceiling)."""
        return np.array(
            [min(j.limits.max_velocity, self.command_max_velocity.get(j.group, np.inf)) for j in self.joints]
        )


def _joint_from_dict(entry: dict[str, Any], where: str) -> Joint:
    try:
        limits = JointLimits(**entry["limits"])
        joint = Joint(
            name=str(entry["name"]),
            motor_index=int(entry["motor_index"]),
            group=str(entry["group"]),
            limits=limits,
            kp=float(entry["kp"]),
            kd=float(entry["kd"]),
            default_position=float(entry["default_position"]),
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"{where}: malformed joint entry {entry.get('name', entry)!r}: {e}") from e
    if joint.group not in GROUPS:
        raise ValueError(f"{where}: joint {joint.name} has unknown group {joint.group!r}; known: {GROUPS}")
    lim = joint.limits
    if not lim.min_position < lim.max_position:
        raise ValueError(f"{where}: joint {joint.name} has min_position >= max_position")
    if not lim.min_position <= joint.default_position <= lim.max_position:
        raise ValueError(f"{where}: joint {joint.name} default_position outside its limits")
    for name in ("max_velocity", "max_acceleration", "max_effort"):
        if not getattr(lim, name) > 0:
            raise ValueError(f"{where}: joint {joint.name} {name} must be > 0")
    if joint.kp < 0 or joint.kd < 0:
        raise ValueError(f"{where}: joint {joint.name} has negative kp/kd")
    return joint


def load_joint_table(variant: str = DEFAULT_VARIANT, path: str = DEFAULT_TABLE) -> JointTable:
    """Load the joint table for a robot variant (g1_29dof, g1_29dof_waist_locked, g1_23dof)."""
    data = load_yaml(path)
    variants = data.get("variants", {})
    if variant not in variants:
        raise ValueError(f"unknown robot variant {variant!r}; {path} defines {sorted(variants)}")
    absent = set(variants[variant])
    joints = tuple(
        _joint_from_dict(e, path) for e in data["joints"] if int(e["motor_index"]) not in absent
    )
    margin = float(data["soft_margin"])
    for j in joints:
        if 2 * margin >= j.limits.max_position - j.limits.min_position:
            raise ValueError(f"{path}: soft_margin {margin} leaves no range for joint {j.name}")
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    return JointTable(
        variant=variant,
        joints=joints,
        soft_margin=margin,
        command_max_velocity={str(k): float(v) for k, v in data.get("command_max_velocity", {}).items()},
        num_motor_slots=int(data["num_motor_slots"]),
        source_hash=f"{variant}:{digest}",
    )
