"""ObservationPolicy: an observation goes through the one preprocessing path into the runtime, with
the current instruction; the newest chunk is kept for visualisation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from dit4dit_policy.policy import Observation
from dit4dit_policy.policy.serving import ObservationPolicy
from dit4dit_policy.preprocessing import image_to_model


class RecordingRuntime:
    cfg = SimpleNamespace(observation=SimpleNamespace(image_size=16))

    def __init__(self):
        self.calls = []

    def infer(self, frame, joint_positions, instruction):
        self.calls.append((frame, joint_positions, instruction))
        return np.full((4, 2), float(len(self.calls)))


def test_when_called_expect_the_preprocessed_frame_and_the_current_instruction_reach_the_runtime():
    runtime = RecordingRuntime()
    policy = ObservationPolicy(runtime, "touch the block")
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    obs = Observation(frame=(image, "bgr8"), frame_stamp=3.0, joints=np.array([0.1, 0.2]), joint_stamp=3.0)
    policy(obs)
    policy.instruction = "now the green one"
    later = Observation(frame=(image, "bgr8"), frame_stamp=3.5, joints=obs.joints, joint_stamp=3.49)
    chunk = policy(later)
    (frame, joints, instruction), (_, _, instruction2) = runtime.calls
    assert torch.equal(frame, image_to_model(image, "bgr8", 16))
    assert np.array_equal(joints, obs.joints) and instruction == "touch the block"
    assert instruction2 == "now the green one"
    stamp, latest = policy.latest_chunk()
    assert stamp == 3.5 and np.array_equal(latest, chunk) and chunk[0, 0] == 2.0  # the frame's stamp
