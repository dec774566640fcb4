"""Kinematics of the right arm on a kinematics-only copy of the URDF (pelvis welded at the origin).

Positions are in the pelvis frame. Used by the scripted expert; never stepped.
"""

from __future__ import annotations

import mujoco
import numpy as np

from dit4dit_policy.joint_table import JointTable
from dit4dit_policy.sim.scene import HAND_SITE, hand_radius, robot_spec


class ArmKinematics:
    """Hand point, its Jacobian over the arm joints and the arm's gravity torques, at a given pose."""

    def __init__(self, table: JointTable, arm_joints: tuple[str, ...]) -> None:
        self.model = robot_spec().compile()
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.table = table
        self._qadr = m.jnt_qposadr[[m.joint(n).id for n in table.names]]
        self.arm_rows = np.array([table.index(n) for n in arm_joints])
        self._arm_dofs = m.jnt_dofadr[[m.joint(n).id for n in arm_joints]]
        self._site = m.site(HAND_SITE).id
        self.hand_radius = hand_radius(m)
        self._jac = np.zeros((3, m.nv))
        self._bias = np.zeros(m.nv)

    def set_pose(self, q: np.ndarray) -> None:
        """All joints, joint-table order."""
        d = self.data
        d.qpos[self._qadr] = q
        mujoco.mj_kinematics(self.model, d)
        mujoco.mj_comPos(self.model, d)

    def hand(self) -> np.ndarray:
        return self.data.site_xpos[self._site].copy()

    def jacobian(self) -> np.ndarray:
        """d(hand)/d(arm joints), 3 x len(arm)."""
        mujoco.mj_jacSite(self.model, self.data, self._jac, None, self._site)
        return self._jac[:, self._arm_dofs].copy()

    def gravity(self) -> np.ndarray:
        """Joint torques that hold the arm against gravity at the pose (at rest)."""
        d = self.data
        d.qvel[:] = 0.0
        mujoco.mj_comVel(self.model, d)
        mujoco.mj_rne(self.model, d, 0, self._bias)
        return self._bias[self._arm_dofs].copy()

    def hand_at(self, q: np.ndarray) -> np.ndarray:
        self.set_pose(q)
        return self.hand()
