"""The scripted expert for reach-and-touch, without ROS: a smooth function of what a policy can observe.

Inputs: the measured joint positions, the block position (pelvis frame; the head camera sees the
block) and whether the block has been touched (the block turns from red to green in the image).
There is no timer and no hidden phase: the same inputs always give the same command. The table's
place in the pelvis frame is scene.Layout's: the expert assumes the fixed base.

1. A hand velocity field in the pelvis frame (positions of the hand sphere's centre):
   - not touched: go to the hover point above the block; as the hand comes horizontally within
     `descend_radius` of the block, the goal height slides down to the touch point (`press` into
     the block's top). Sideways motion fades in as the hand rises from `clearance` above the
     block to the hover height, so from the home pose (below the table top) the hand first rises,
     then moves over the table, turning that corner smoothly.
   - touched: go to the hand's home position, but never lower than `clearance` above the block
     while horizontally near it, nor above the table while over it; sideways motion waits until
     the hand is within `gate_height` of the height it needs. So the hand lifts off the block,
     moves back over the table, clears the table's edge and drops to home.
   Speed: max_speed, falling off near the goal (smoothly, speed_radius), and capped by
   start_speed + start_gain * s, s being the distance from where the motion starts (home, or the
   hand on the block's top): the speed grows smoothly when the goal switches.
2. Joint velocities by damped least squares on the hand Jacobian (kinematics-only model), plus a
   pull toward the home posture in the Jacobian's null space. After the touch, within
   `home_radius` of the hand's home position (blending in from twice that), it is a joint-space
   move to the home pose, so the episode ends at the home pose and not at another posture with the hand there.
3. The command: q + gravity/kp + lead_time * joint velocity, inside the soft joint limits. The
   gravity term makes the bridge's PD (kp from the joint table) hold the arm where it is instead
   of letting it sag; the lead makes it move. The arm's speed then follows from the PD, the
   joints' damping and the loop's latency: lead_time is tuned so that it is about the desired one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dit4dit_policy.config import section_params
from dit4dit_policy.easing import smoothstep
from dit4dit_policy.joint_table import JointTable
from dit4dit_policy.sim.config import check_interval, check_number
from dit4dit_policy.sim.kinematics import ArmKinematics
from dit4dit_policy.sim.physics import RIGHT_ARM
from dit4dit_policy.sim.scene import Layout

EXPERT_PARAMS_FILE = "expert.yaml"
EXPERT_SECTION = "sim_expert"
# Horizontal width (m) over which the table and block zones fade in.
_ZONE_WIDTH = 0.03


@dataclass(frozen=True)
class ExpertConfig:
    """Values and their meaning: config/expert.yaml (section sim_expert)."""

    max_speed: float  # m/s
    speed_radius: float  # m
    start_speed: float  # m/s
    start_gain: float  # 1/s
    hover: float  # m
    press: float  # m
    descend_radius: tuple[float, float]  # m
    clearance: float  # m
    gate_height: float  # m
    posture_gain: float  # 1/s
    home_radius: float  # m
    home_gain: float  # 1/s
    damping: float  # m
    lead_time: float  # s

    def __post_init__(self) -> None:
        for name in ("max_speed", "speed_radius", "start_speed", "start_gain", "gate_height", "damping", "lead_time",
                     "home_radius", "home_gain"):
            check_number(name, getattr(self, name), 0.0, 10.0, open_low=True)
        for name in ("hover", "press", "clearance", "posture_gain"):
            check_number(name, getattr(self, name), 0.0, 10.0)
        check_interval("descend_radius", self.descend_radius, 0.0, 1.0)
        if not self.hover > self.clearance:
            raise ValueError(f"hover ({self.hover}) must be above the clearance ({self.clearance})")
        if not self.descend_radius[0] < self.descend_radius[1]:
            raise ValueError(f"descend_radius must be [inner, outer], inner < outer, got {list(self.descend_radius)}")


def expert_config(p: dict[str, Any]) -> ExpertConfig:
    """From flat sim_expert parameters (KeyError naming a missing one)."""
    values = {name: p[name] for name in ExpertConfig.__dataclass_fields__}
    values["descend_radius"] = tuple(values["descend_radius"])
    return ExpertConfig(**values)


def load_expert_config(file: str = EXPERT_PARAMS_FILE, **overrides: Any) -> ExpertConfig:
    p = section_params(file, EXPERT_SECTION)
    unknown = set(overrides) - set(p)
    if unknown:
        raise ValueError(f"unknown {EXPERT_SECTION} parameters {sorted(unknown)}; known: {sorted(p)}")
    return expert_config({**p, **overrides})


@dataclass(frozen=True)
class ExpertStep:
    """One evaluation: where the hand is and goes, and the joint velocity and command for it."""

    hand: np.ndarray  # pelvis frame
    goal: np.ndarray  # what the hand heads for now
    hand_velocity: np.ndarray  # desired, m/s
    joint_velocity: np.ndarray  # desired, rad/s, right-arm order
    command: np.ndarray  # joint position targets, right-arm order


class ReachExpert:
    """command(q, block, touched) -> right-arm position targets (RIGHT_ARM order)."""

    joint_names = RIGHT_ARM

    def __init__(self, table: JointTable, config: ExpertConfig | None = None, layout: Layout | None = None) -> None:
        self.config = config or load_expert_config()
        self.layout = layout or Layout()
        self.table = table
        self.kin = ArmKinematics(table, RIGHT_ARM)
        rows = self.kin.arm_rows
        self.home = table.column("default_position")
        self.home_arm = self.home[rows]
        self._kp = table.column("kp")[rows]
        margin = table.soft_margin
        self._lower = table.column("min_position")[rows] + margin
        self._upper = table.column("max_position")[rows] - margin
        self._r = self.kin.hand_radius

    def command(self, q: np.ndarray, block: np.ndarray, touched: bool) -> np.ndarray:
        return self.step(q, block, touched).command

    def step(self, q: np.ndarray, block: np.ndarray, touched: bool) -> ExpertStep:
        """q: every joint, joint-table order (rad); block: block centre in the pelvis frame (m)."""
        q = np.asarray(q, np.float64)
        block = np.asarray(block, np.float64)
        if q.shape != self.home.shape or not np.isfinite(q).all():
            raise ValueError(f"q must be {self.home.shape[0]} finite joint positions in joint-table order")
        if block.shape != (3,) or not np.isfinite(block).all():
            raise ValueError(f"block must be a finite 3-vector (pelvis frame), got {block!r}")
        # Where the hand is at the home pose, with the rest of the body (the waist) as it is now.
        q_home = q.copy()
        q_home[self.kin.arm_rows] = self.home_arm
        home_hand = self.kin.hand_at(q_home)
        self.kin.set_pose(q)
        hand = self.kin.hand()
        goal, v = self._hand_velocity(hand, home_hand, block, bool(touched))
        jac = self.kin.jacobian()
        q_arm = q[self.kin.arm_rows]
        lam2 = self.config.damping**2
        pinv = jac.T @ np.linalg.inv(jac @ jac.T + lam2 * np.eye(3))
        null = np.eye(len(q_arm)) - pinv @ jac
        qdot = pinv @ v + null @ (self.config.posture_gain * (self.home_arm - q_arm))
        if touched:
            # Close to the hand's home position, head for the home pose in joint space: the hand
            # path alone can end in another arm posture with the hand at the same place.
            r = self.config.home_radius
            w = 1.0 - smoothstep((float(np.linalg.norm(hand - home_hand)) - r) / r)
            qdot = (1.0 - w) * qdot + w * self.config.home_gain * (self.home_arm - q_arm)
        target = q_arm + self.kin.gravity() / self._kp + self.config.lead_time * qdot
        return ExpertStep(hand, goal, v, qdot, np.clip(target, self._lower, self._upper))

    def _hand_velocity(
        self, p: np.ndarray, home_hand: np.ndarray, block: np.ndarray, touched: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg, lay, r = self.config, self.layout, self._r
        top = block[2] + lay.block_size[2] / 2
        z_touch = top + r - cfg.press
        d = float(np.hypot(*(p[:2] - block[:2])))
        if not touched:
            s = smoothstep((d - cfg.descend_radius[0]) / (cfg.descend_radius[1] - cfg.descend_radius[0]))
            goal = np.array([block[0], block[1], z_touch + (cfg.hover + cfg.press) * s])
            start = home_hand
            # From home the hand rises; sideways motion fades in from where it clears the block
            # (clearance above its top) up to the hover height: a round corner, not a sharp one.
            gate_span = cfg.hover - cfg.clearance
        else:
            z_home = home_hand[2]
            table_edge = lay.table_front - r - cfg.clearance  # hand centre x where the sphere reaches the table
            over_table = smoothstep((p[0] - table_edge + _ZONE_WIDTH) / _ZONE_WIDTH)
            footprint = math.hypot(lay.block_size[0], lay.block_size[1]) / 2 + r + cfg.clearance
            near_block = 1.0 - smoothstep((d - footprint) / _ZONE_WIDTH)
            z_table = lay.table_top + r + cfg.clearance
            z_block = top + r + cfg.clearance
            z_need = max(
                z_home + over_table * max(z_table - z_home, 0.0),
                z_home + near_block * max(z_block - z_home, 0.0),
            )
            goal = np.array([home_hand[0], home_hand[1], z_need])
            start = np.array([block[0], block[1], top + r])  # the hand sphere on the block's top
            gate_span = cfg.gate_height
        gate = 1.0 - smoothstep((goal[2] - p[2]) / gate_span)
        err = np.array([gate * (goal[0] - p[0]), gate * (goal[1] - p[1]), goal[2] - p[2]])
        dist = float(np.linalg.norm(err))
        if dist == 0.0:
            return goal, np.zeros(3)
        speed = cfg.max_speed * dist / math.hypot(cfg.speed_radius, dist)
        cap = cfg.start_speed + cfg.start_gain * float(np.linalg.norm(p - start))
        return goal, min(speed, cap) * err / dist
