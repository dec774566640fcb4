"""DiT4DiT: a Cosmos video DiT whose hidden states condition a flow-matching action DiT.

Trainer: `load_preset`, `build_model`, `TrainBatch`, `compute_loss`,
`save_checkpoint(..., text_encoder_name=encoder.name)`.
Policy: `load_checkpoint`, `FastInference(model, norm_stats, text_encoder).infer(...)`.
No ROS here: tensors and numpy in, tensors and numpy out.
"""

from dit4dit_policy.model.action_dit import ActionDenoiser, ActionDiT
from dit4dit_policy.model.checkpoint import load_checkpoint, save_checkpoint
from dit4dit_policy.model.config import ModelConfig, known_presets, load_preset
from dit4dit_policy.model.dit4dit import DiT4DiT, build_model
from dit4dit_policy.model.flops import FlopReport, flop_report
from dit4dit_policy.model.inference import ChunkNoise, FastInference, ReferenceInference, StageTimes
from dit4dit_policy.model.loss import LossParts, TrainBatch, compute_loss
from dit4dit_policy.model.sampler import euler_sample, tau_schedule
from dit4dit_policy.model.video import VideoBackbone, VideoTrunk

__all__ = [
    "ActionDenoiser",
    "ActionDiT",
    "ChunkNoise",
    "DiT4DiT",
    "FastInference",
    "FlopReport",
    "LossParts",
    "ModelConfig",
    "ReferenceInference",
    "StageTimes",
    "TrainBatch",
    "VideoBackbone",
    "VideoTrunk",
    "build_model",
    "compute_loss",
    "euler_sample",
    "flop_report",
    "known_presets",
    "load_checkpoint",
    "load_preset",
    "save_checkpoint",
    "tau_schedule",
]
