"""Reach and touch: a red block placed at random on the table; touch it with the right hand, return home.

Per episode: the block is placed from numpy.random.default_rng([seed, episode]) inside the
configured region (pelvis frame) with a random yaw, at rest on the table. Success is latched the
first time the right hand's collision sphere comes within `success_distance` of the block's
surface; from then on the block is drawn green, so the camera shows that the touch happened (a
policy imitating the expert can see which way to go). The episode is done when, after the touch,
the right arm is back at the home pose and at rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from dit4dit_policy.sim.config import TaskConfig
from dit4dit_policy.sim.scene import (
    BLOCK_BODY,
    BLOCK_GEOM,
    BLOCK_RGBA,
    HAND_BODY,
    HAND_SITE,
    ROBOT_BASE,
    TOUCHED_RGBA,
    Layout,
)

# Within this gap (m) the exact hand-to-block distance is computed; farther, a bounding-sphere lower bound.
_DISTANCE_HORIZON = 0.05


def _vec(a: np.ndarray) -> list[float]:
    return [round(float(x), 6) for x in a]


def _opt_time(t: float | None) -> float | None:
    return None if t is None else round(t, 4)


@dataclass(frozen=True)
class TaskState:
    """One look at the task; `as_dict()` is what /sim/task publishes as JSON."""

    episode: int
    seed: int
    sim_time: float  # s since the simulation started
    episode_time: float  # s since this episode's reset
    block_position: np.ndarray  # world, m
    block_quaternion: np.ndarray  # world, w x y z
    block_in_pelvis: np.ndarray  # m
    block_size: tuple[float, float, float]
    hand_position: np.ndarray  # world, centre of the right hand's collision sphere
    hand_in_pelvis: np.ndarray
    hand_block_distance: float  # m between the hand sphere and the block surface (< 0: penetrating)
    success: bool  # touched this episode (latched)
    success_time: float | None  # episode time of the touch
    at_home: bool  # right arm at the home pose and at rest, now
    done: bool  # back home after the touch (latched)
    done_time: float | None

    def as_dict(self) -> dict:
        return {
            "episode": self.episode,
            "seed": self.seed,
            "sim_time": round(self.sim_time, 6),
            "episode_time": round(self.episode_time, 6),
            "block": {
                "position": _vec(self.block_position),
                "quaternion": _vec(self.block_quaternion),
                "position_in_pelvis": _vec(self.block_in_pelvis),
                "size": list(self.block_size),
            },
            "hand": {"position": _vec(self.hand_position), "position_in_pelvis": _vec(self.hand_in_pelvis)},
            "hand_block_distance": round(self.hand_block_distance, 6),
            "success": self.success,
            "success_time": _opt_time(self.success_time),
            "at_home": self.at_home,
            "done": self.done,
            "done_time": _opt_time(self.done_time),
        }


class ReachTouchTask:
    """The task's bookkeeping on a simulation model built by scene.build_model."""

    def __init__(self, model: mujoco.MjModel, config: TaskConfig, layout: Layout, arm_qadr, arm_dadr, home_arm):
        self.config = config
        self.layout = layout
        self.model = model
        self._block_body = model.body(BLOCK_BODY).id
        self._block_geom = model.geom(BLOCK_GEOM).id
        self._block_qadr = model.jnt_qposadr[model.body_jntadr[self._block_body]]
        self._block_dadr = model.jnt_dofadr[model.body_jntadr[self._block_body]]
        self._pelvis = model.body(ROBOT_BASE).id
        self._hand_site = model.site(HAND_SITE).id
        hand_body = model.body(HAND_BODY).id
        self._hand_geom = next(
            g for g in range(model.ngeom) if model.geom_bodyid[g] == hand_body and model.geom_contype[g]
        )
        self._near = config.success_distance + model.geom_rbound[self._hand_geom] + model.geom_rbound[self._block_geom]
        self._arm_qadr = np.asarray(arm_qadr)
        self._arm_dadr = np.asarray(arm_dadr)
        self._home_arm = np.asarray(home_arm, np.float64)
        self.episode = -1
        self._start = 0.0
        self.success_time: float | None = None
        self.done_time: float | None = None

    @property
    def success(self) -> bool:
        return self.success_time is not None

    @property
    def done(self) -> bool:
        return self.done_time is not None

    def place_block(self, data: mujoco.MjData, episode: int) -> None:
        """Start episode `episode`: block at its random pose, at rest, red; nothing latched."""
        cfg, lay = self.config, self.layout
        rng = np.random.default_rng([cfg.seed, episode])
        x = rng.uniform(*cfg.block_x)
        y = rng.uniform(*cfg.block_y)
        yaw = rng.uniform(*cfg.block_yaw)
        pelvis_world = np.array([0.0, 0.0, lay.pelvis_height])  # the block is placed for the fixed stand pose
        q = self._block_qadr
        data.qpos[q : q + 3] = pelvis_world + (x, y, lay.block_rest_z)
        data.qpos[q + 3 : q + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        data.qvel[self._block_dadr : self._block_dadr + 6] = 0.0
        self.model.geom_rgba[self._block_geom] = BLOCK_RGBA
        self.episode = episode
        self._start = data.time
        self.success_time = self.done_time = None

    def update(self, data: mujoco.MjData) -> bool:
        """Latch success and done from the current state (after mj_step); True if either changed."""
        changed = False
        if not self.success and self.hand_block_distance(data) <= self.config.success_distance:
            self.success_time = data.time - self._start
            self.model.geom_rgba[self._block_geom] = TOUCHED_RGBA
            changed = True
        if self.success and not self.done and self.at_home(data):
            self.done_time = data.time - self._start
            changed = True
        return changed

    def hand_block_distance(self, data: mujoco.MjData) -> float:
        """Signed gap (m) between the hand sphere and the block: exact within 5 cm, farther a lower bound."""
        centres = np.linalg.norm(data.geom_xpos[self._hand_geom] - data.geom_xpos[self._block_geom])
        if centres > self._near + _DISTANCE_HORIZON:
            return float(centres - self._near + self.config.success_distance)
        return float(
            mujoco.mj_geomDistance(self.model, data, self._hand_geom, self._block_geom, _DISTANCE_HORIZON, None)
        )

    def at_home(self, data: mujoco.MjData) -> bool:
        cfg = self.config
        return bool(
            np.abs(data.qpos[self._arm_qadr] - self._home_arm).max() <= cfg.home_tolerance
            and np.abs(data.qvel[self._arm_dadr]).max() <= cfg.home_speed
        )

    def state(self, data: mujoco.MjData) -> TaskState:
        pelvis_pos = data.xpos[self._pelvis]
        pelvis_rot = data.xmat[self._pelvis].reshape(3, 3)
        block = data.xpos[self._block_body].copy()
        hand = data.site_xpos[self._hand_site].copy()
        return TaskState(
            episode=self.episode,
            seed=self.config.seed,
            sim_time=float(data.time),
            episode_time=float(data.time - self._start),
            block_position=block,
            block_quaternion=data.xquat[self._block_body].copy(),
            block_in_pelvis=pelvis_rot.T @ (block - pelvis_pos),
            block_size=self.layout.block_size,
            hand_position=hand,
            hand_in_pelvis=pelvis_rot.T @ (hand - pelvis_pos),
            hand_block_distance=self.hand_block_distance(data),
            success=self.success,
            success_time=self.success_time,
            at_home=self.at_home(data),
            done=self.done,
            done_time=self.done_time,
        )
