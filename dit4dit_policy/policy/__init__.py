"""The policy node's core (pure Python/numpy, never ROS): stamp sync, async inference, chunk blending."""

from dit4dit_policy.policy.chunking import AddResult, ChunkBlender, Unavailable, check_chunk
from dit4dit_policy.policy.config import PolicyConfig
from dit4dit_policy.policy.controller import Command, Hold, HoldReason, PolicyController, PolicyStatus
from dit4dit_policy.policy.sync import NoObservation, Observation, StampSync, SyncFailure
from dit4dit_policy.policy.worker import ChunkReady, InferenceFailed, InferenceWorker, WorkerStats

__all__ = [
    "AddResult",
    "ChunkBlender",
    "ChunkReady",
    "Command",
    "Hold",
    "HoldReason",
    "InferenceFailed",
    "InferenceWorker",
    "NoObservation",
    "Observation",
    "PolicyConfig",
    "PolicyController",
    "PolicyStatus",
    "StampSync",
    "SyncFailure",
    "Unavailable",
    "WorkerStats",
    "check_chunk",
]
