"""The inference function the worker runs: a synced observation (raw camera image + joint angles)
through the one preprocessing path into a runtime, with the current instruction."""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from dit4dit_policy.policy.sync import Observation
from dit4dit_policy.preprocessing import image_to_model


class ChunkRuntime(Protocol):
    cfg: Any

    def infer(self, frame: Any, joint_positions: np.ndarray, instruction: str) -> np.ndarray: ...


class ObservationPolicy:
    """Callable `(Observation) -> chunk [H, action.real_dim]`; `frame` is `(image uint8 HxWxC, encoding)`.

    Runs on the inference worker's thread, so image resizing stays off the control tick. Keeps the
    newest chunk (with its observation stamp) for visualisation.
    """

    def __init__(self, runtime: ChunkRuntime, instruction: str):
        self.runtime = runtime
        self.image_size = runtime.cfg.observation.image_size
        self._lock = threading.Lock()
        self._instruction = instruction
        self._latest: tuple[float, np.ndarray] | None = None

    @property
    def instruction(self) -> str:
        with self._lock:
            return self._instruction

    @instruction.setter
    def instruction(self, text: str) -> None:
        with self._lock:
            self._instruction = text

    def __call__(self, obs: Observation) -> np.ndarray:
        image, encoding = obs.frame
        frame = image_to_model(image, encoding, self.image_size)
        chunk = self.runtime.infer(frame, obs.joints, self.instruction)
        with self._lock:
            self._latest = (obs.frame_stamp, chunk)
        return chunk

    def latest_chunk(self) -> tuple[float, np.ndarray] | None:
        """(observation stamp, chunk) of the newest inference, or None."""
        with self._lock:
            return self._latest
