"""Head-camera frames from simulator snapshots, rendered on a thread of their own.

The renderer keeps its own copy of the model (the block's colour is set per snapshot) and its own
MjData; it never touches the simulation's. Snapshots arriving while a frame is being rendered
replace the waiting one (the newest wins) and are counted in `frames_dropped`.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

from dit4dit_policy.sim.camera import OffscreenCamera
from dit4dit_policy.sim.scene import BLOCK_GEOM, BLOCK_RGBA, HEAD_CAMERA, TOUCHED_RGBA
from dit4dit_policy.sim.simulator import Snapshot


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (height, width, 3) uint8 RGB
    sim_time: float
    stamp: float  # wall-anchored seconds
    index: int


class FrameRenderer:
    """submit(snapshot) from any thread; on_frame(frame) is called on the render thread."""

    def __init__(self, model: mujoco.MjModel, width: int, height: int, on_frame: Callable[[Frame], None]) -> None:
        self._model = copy.copy(model)
        self._width, self._height = width, height
        self._on_frame = on_frame
        self._cond = threading.Condition()
        self._pending: Snapshot | None = None
        self._stop = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.frames_rendered = 0
        self.frames_dropped = 0
        self.render_seconds = 0.0  # total time spent rendering

    def start(self) -> FrameRenderer:
        """Start the thread; RuntimeError if no headless OpenGL context can be made."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="sim_camera", daemon=True)
        self._thread.start()
        ready.wait()
        if self.error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"the head camera cannot render: {self.error}") from self.error
        return self

    def submit(self, snapshot: Snapshot) -> None:
        with self._cond:
            if self._pending is not None:
                self.frames_dropped += 1
            self._pending = snapshot
            self._cond.notify()

    def stop(self) -> None:
        if self._thread is None:
            return
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
        self._thread = None

    def _run(self, ready: threading.Event) -> None:
        model = self._model
        try:
            data = mujoco.MjData(model)
            camera = OffscreenCamera(model, HEAD_CAMERA, self._width, self._height)
        except BaseException as e:
            self.error = e
            ready.set()
            return
        ready.set()
        block = model.geom(BLOCK_GEOM).id
        try:
            while True:
                with self._cond:
                    while self._pending is None and not self._stop:
                        self._cond.wait()
                    if self._stop:
                        return
                    snap, self._pending = self._pending, None
                t0 = time.perf_counter()
                data.qpos[:] = snap.qpos
                model.geom_rgba[block] = TOUCHED_RGBA if snap.touched else BLOCK_RGBA
                mujoco.mj_kinematics(model, data)
                mujoco.mj_comPos(model, data)
                mujoco.mj_camlight(model, data)  # camera and light poses: mj_kinematics leaves them out
                image = camera.render(data)
                self.render_seconds += time.perf_counter() - t0
                self.frames_rendered += 1
                self._on_frame(Frame(image, snap.sim_time, snap.stamp, snap.index))
        except BaseException as e:
            self.error = e
        finally:
            camera.close()
