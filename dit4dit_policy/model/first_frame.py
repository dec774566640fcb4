"""The Wan 2.1 VAE encoder on the first frame of a clip, as the 2D network it reduces to.

On the first frame the causal encoder sees only zeros before it: every causal 3D convolution pads
the past with zeros, so only the last temporal tap of its kernel meets data, and the temporal
downsamplers skip the first frame. The first latent frame is therefore a 2D network over that
frame, with each k x 3 x 3 kernel cut to its last 1 x 3 x 3 slice: the same result as
`AutoencoderKLWan.encode` on the frame (up to float summation order) for a third of the
convolution work. Written against diffusers' Wan 2.1 modules (no residual down-blocks, no
patchify), which is the only layout the presets build.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import (
    WanAttentionBlock,
    WanCausalConv3d,
    WanResample,
    WanResidualBlock,
)
from torch import nn


def _last_tap(conv: WanCausalConv3d, x: torch.Tensor) -> torch.Tensor:
    """The causal convolution's output on frame 0 when nothing precedes it: x [B, C, 1, H, W]."""
    pad_w, _, pad_h = conv._padding[:3]
    return F.conv3d(x, conv.weight[:, :, -1:], conv.bias, stride=conv.stride, padding=(0, pad_h, pad_w))


def _shortcut(block: WanResidualBlock, x: torch.Tensor) -> torch.Tensor:
    return x if isinstance(block.conv_shortcut, nn.Identity) else _last_tap(block.conv_shortcut, x)


def _residual(block: WanResidualBlock, x: torch.Tensor) -> torch.Tensor:
    h = _shortcut(block, x)
    x = _last_tap(block.conv1, block.nonlinearity(block.norm1(x)))
    x = _last_tap(block.conv2, block.dropout(block.nonlinearity(block.norm2(x))))
    return x + h


def _layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, WanResidualBlock):
        return _residual(layer, x)
    if isinstance(layer, WanResample | WanAttentionBlock):
        # Both are per-frame 2D already; without a feature cache the resampler skips time_conv,
        # exactly as it does for the first chunk of a clip.
        return layer(x)
    raise TypeError(f"unexpected layer {type(layer).__name__} in the Wan 2.1 encoder")


def encode_first_frame(vae: AutoencoderKLWan, frame: torch.Tensor) -> torch.Tensor:
    """Pixels [B, 3, 1, H, W] -> the posterior mode of latent frame 0, [B, z_dim, 1, H/8, W/8]."""
    if vae.config.is_residual or vae.config.patch_size is not None:
        raise ValueError("encode_first_frame supports the Wan 2.1 VAE layout only (no residual blocks, no patchify)")
    if frame.ndim != 5 or frame.shape[2] != 1:
        raise ValueError(f"expected one frame as [B, 3, 1, H, W], got shape {list(frame.shape)}")
    enc = vae.encoder
    x = _last_tap(enc.conv_in, frame)
    for layer in enc.down_blocks:
        x = _layer(layer, x)
    x = _residual(enc.mid_block.resnets[0], x)
    for attn, resnet in zip(enc.mid_block.attentions, enc.mid_block.resnets[1:], strict=True):
        x = _residual(resnet, attn(x))
    x = _last_tap(enc.conv_out, enc.nonlinearity(enc.norm_out(x)))
    moments = _last_tap(vae.quant_conv, x)
    return moments[:, : vae.config.z_dim]
