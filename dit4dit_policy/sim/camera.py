"""Headless rendering of one model camera into RGB arrays.

The OpenGL backend is chosen here, not by `import mujoco` (which reads MUJOCO_GL once, at whatever
import came first): MUJOCO_GL=egl or osmesa when set; otherwise EGL where libEGL is installed,
else OSMesa. A camera's GL context belongs to the thread that created it: create, render and
close it on one thread.
"""

from __future__ import annotations

import ctypes.util
import os

import mujoco
import numpy as np

from dit4dit_policy.sim.scene import VISIBLE_GROUPS

BACKENDS = ("egl", "osmesa")


def gl_backend() -> str:
    """The headless backend to use: MUJOCO_GL if it names one, else egl where libEGL exists, else osmesa."""
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen in BACKENDS:
        return chosen
    if ctypes.util.find_library("EGL"):
        return "egl"
    if ctypes.util.find_library("OSMesa"):
        return "osmesa"
    raise RuntimeError(
        f"no headless OpenGL here: MUJOCO_GL={chosen!r} names neither of {BACKENDS}, and neither libEGL nor "
        "libOSMesa is installed (apt: libegl1 or libosmesa6)"
    )


def _gl_context(width: int, height: int):
    backend = gl_backend()
    try:
        if backend == "egl":
            from mujoco.egl import GLContext
        else:
            from mujoco.osmesa import GLContext
        return GLContext(width, height)
    except Exception as e:  # ImportError, or a display that cannot be created
        raise RuntimeError(f"cannot create a headless OpenGL context with {backend}: {e}") from e


class OffscreenCamera:
    """Renders `camera` of `model` at width x height; render(data) -> (height, width, 3) uint8 RGB."""

    def __init__(self, model: mujoco.MjModel, camera: str, width: int, height: int) -> None:
        if not (isinstance(width, int) and isinstance(height, int) and 8 <= width <= 4096 and 8 <= height <= 4096):
            raise ValueError(f"camera size must be integers in 8..4096, got {width!r} x {height!r}")
        if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
            raise ValueError(
                f"camera size {width}x{height} exceeds the model's offscreen buffer "
                f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}"
            )
        self.model = model
        self.width, self.height = width, height
        self._gl = _gl_context(width, height)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._scene = mujoco.MjvScene(model, maxgeom=max(1000, 2 * model.ngeom))
        self._option = mujoco.MjvOption()
        self._option.geomgroup[:] = 0
        self._option.geomgroup[list(VISIBLE_GROUPS)] = 1
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = model.camera(camera).id
        self._perturb = mujoco.MjvPerturb()
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._pixels = np.empty((height, width, 3), np.uint8)

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """The image for data's current kinematics (run mj_kinematics or a step first); a new array."""
        if self._context is None:
            raise RuntimeError("OffscreenCamera.render after close")
        self._gl.make_current()
        mujoco.mjv_updateScene(
            self.model, data, self._option, self._perturb, self._camera, mujoco.mjtCatBit.mjCAT_ALL, self._scene
        )
        mujoco.mjr_render(self._rect, self._scene, self._context)
        mujoco.mjr_readPixels(self._pixels, None, self._rect, self._context)
        return np.flipud(self._pixels).copy()  # OpenGL rows run bottom-up

    def close(self) -> None:
        if self._context is None:
            return
        self._context.free()
        self._context = None
        self._gl.free()
        self._gl = None

    def __enter__(self) -> OffscreenCamera:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
