"""FLOPs of one action chunk (batch 1), part by part, from a preset's shapes.

The transformers are counted analytically (2 FLOPs per multiply-add of every matmul, attention
included; norms, activations and other elementwise work left out). The VAE's 3D convolutions are
counted by running its encoder on the meta device under torch's FLOP counter: the model's own
shapes, no arithmetic done. `measure_flops` applies that counter to any callable; the tests use it
to check the analytic counts against the real modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKLWan
from torch.utils.flop_counter import FlopCounterMode

from dit4dit_policy.model.config import ModelConfig
from dit4dit_policy.model.first_frame import encode_first_frame


def measure_flops(fn: Callable[[], object]) -> int:
    """Matmul/conv/attention FLOPs torch counts while `fn` runs. Use meta tensors: there,
    attention is decomposed into counted matmuls (CPU kernels for it are not counted)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def vae_encode_flops(cfg: ModelConfig, frames: int) -> int:
    """diffusers' encode of a clip of `frames` frames."""
    with torch.device("meta"):
        vae = AutoencoderKLWan(**cfg.vae_kwargs())
        s = cfg.observation.image_size
        video = torch.empty(1, 3, frames, s, s)
    return measure_flops(lambda: vae.encode(video).latent_dist.mode())


def vae_first_frame_flops(cfg: ModelConfig) -> int:
    """The fast path's 2D encoder of the current frame."""
    with torch.device("meta"):
        vae = AutoencoderKLWan(**cfg.vae_kwargs())
        s = cfg.observation.image_size
        frame = torch.empty(1, 3, 1, s, s)
    return measure_flops(lambda: encode_first_frame(vae, frame))


def video_block_flops(cfg: ModelConfig, adaln_rows: int) -> int:
    """One Cosmos block over all video tokens; the AdaLN MLPs run on `adaln_rows` rows (diffusers:
    every token; the fast trunk: once per latent frame)."""
    v, n = cfg.video, cfg.num_video_tokens
    w, r, ctx, length = v.width, v.adaln_lora_dim, v.text_embed_dim, cfg.text.max_tokens
    adaln = 3 * 2 * adaln_rows * (w * r + r * 3 * w)
    self_attn = 2 * n * w * w * 4 + 4 * n * n * w
    cross_attn = 2 * n * w * w * 2 + 2 * length * ctx * w * 2 + 4 * n * length * w
    ff = 2 * 2 * n * w * int(w * v.mlp_ratio)
    return adaln + self_attn + cross_attn + ff


def _video_stem_flops(cfg: ModelConfig) -> int:
    """Patch embedding and the per-frame timestep MLP."""
    v, n = cfg.video, cfg.num_video_tokens
    _, ph, pw = v.patch_size
    patch = 2 * n * (cfg.vae.z_dim + 2) * ph * pw * v.width
    time = 2 * cfg.latent_frames * (v.width * v.width + v.width * 3 * v.width)
    return patch + time


def text_projection_flops(cfg: ModelConfig) -> int:
    return 2 * cfg.text.max_tokens * cfg.text.out_dim * cfg.video.text_embed_dim


def video_full_flops(cfg: ModelConfig) -> int:
    """diffusers' forward: text projection, all blocks, output head."""
    v, n = cfg.video, cfg.num_video_tokens
    _, ph, pw = v.patch_size
    head = (
        2 * n * (v.width * v.adaln_lora_dim + v.adaln_lora_dim * 2 * v.width)
        + 2 * n * v.width * ph * pw * cfg.vae.z_dim
    )
    blocks = v.num_layers * video_block_flops(cfg, adaln_rows=n)
    return _video_stem_flops(cfg) + text_projection_flops(cfg) + blocks + head


def video_trunk_flops(cfg: ModelConfig) -> int:
    """The fast trunk: blocks 0..extract_block, AdaLN per frame, text context given."""
    blocks = (cfg.video.extract_block + 1) * video_block_flops(cfg, adaln_rows=cfg.latent_frames)
    return _video_stem_flops(cfg) + blocks


def _cross_self_layers(cfg: ModelConfig) -> tuple[int, int]:
    layers = cfg.action_dit.num_layers
    return (layers + 1) // 2, layers // 2


def action_kv_flops(cfg: ModelConfig) -> int:
    """Keys and values of every cross-attention block over the video tokens."""
    n_cross, _ = _cross_self_layers(cfg)
    return n_cross * 2 * 2 * cfg.num_video_tokens * cfg.video.width * cfg.action_dit.width


def action_state_flops(cfg: ModelConfig) -> int:
    a = cfg.action_dit
    return 2 * (cfg.state.dim * a.state_hidden + a.state_hidden * a.width)


def action_step_flops(cfg: ModelConfig) -> int:
    """One denoising step given the keys/values and the state token."""
    a, h, dim = cfg.action_dit, cfg.action.horizon, cfg.action.dim
    w, s, n = a.width, 1 + cfg.action.horizon, cfg.num_video_tokens
    n_cross, n_self = _cross_self_layers(cfg)
    time = 2 * (a.timestep_dim * w + w * w)
    action_in = 2 * h * (dim * w + 2 * w * w + w * w)
    common = 2 * w * 2 * w + 2 * s * w * w * 2 + 2 * 2 * s * w * a.ffn_mult * w  # AdaLN, q/out, FFN
    cross = n_cross * (common + 4 * s * n * w)
    self_ = n_self * (common + 2 * s * w * w * 2 + 4 * s * s * w)
    out = 2 * w * 2 * w + 2 * s * w * w + 2 * h * (w * a.decoder_hidden + a.decoder_hidden * dim)
    return time + action_in + cross + self_ + out


@dataclass(frozen=True)
class FlopReport:
    preset: str
    parts: dict[str, int]  # name -> FLOPs, one chunk at batch 1

    def rows(self) -> list[tuple[str, int]]:
        return list(self.parts.items())


def flop_report(cfg: ModelConfig) -> FlopReport:
    steps = cfg.sampling.steps
    vae_all = vae_encode_flops(cfg, cfg.observation.num_frames)
    vae_one = vae_encode_flops(cfg, 1)
    vae_2d = vae_first_frame_flops(cfg)
    full, trunk = video_full_flops(cfg), video_trunk_flops(cfg)
    kv, state, step = action_kv_flops(cfg), action_state_flops(cfg), action_step_flops(cfg)
    parts = {
        f"vae_encode_{cfg.observation.num_frames}_frames": vae_all,
        "vae_encode_current_frame": vae_one,
        "vae_encode_current_frame_2d": vae_2d,
        "text_projection": text_projection_flops(cfg),
        "video_block_diffusers": video_block_flops(cfg, adaln_rows=cfg.num_video_tokens),
        "video_block_fast": video_block_flops(cfg, adaln_rows=cfg.latent_frames),
        f"video_dit_all_{cfg.video.num_layers}_blocks": full,
        f"video_trunk_blocks_0_{cfg.video.extract_block}": trunk,
        "action_kv_projection": kv,
        "action_state_token": state,
        "action_denoise_step": step,
        "chunk_reference": vae_all + full + steps * (kv + state + step),
        "chunk_fast": vae_2d + trunk + kv + state + steps * step,
    }
    return FlopReport(preset=cfg.name, parts=parts)
