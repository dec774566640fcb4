"""The video half of DiT4DiT: Wan 2.1 VAE + Cosmos-Predict2.5 transformer (diffusers classes).

Layout of the transformer input, as in diffusers' Cosmos 2.5 video2world pipeline: normalised
latents (z_dim channels), the condition-mask channel (1 on the clean conditioning frame) and the
padding-mask channel (all zeros). We build the transformer with `concat_padding_mask=False` and
`in_channels = z_dim + 2` and concatenate both channels ourselves; diffusers would resize the
padding mask with torchvision, which this stack does not have. The patch embedding then has the
same shape as the released checkpoint's, so its weights load unchanged.

Timesteps are per latent frame: the conditioning frame gets `cond_timestep` (~1e-4), future frames
their flow sigma in [0, 1] (the pipeline passes sigma itself as the timestep), in float32 whatever
the model dtype, as the pipeline does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel
from torch import nn

from dit4dit_policy.model.config import ModelConfig
from dit4dit_policy.model.first_frame import encode_first_frame

# Fields of the diffusers configs that must agree with the preset for the weights to mean what the
# preset says. The released checkpoint has in_channels = z_dim + 1 and concat_padding_mask = True:
# the same patch-embedding shape as ours (see module docstring), so those two are overridden.
_TRANSFORMER_FIELDS = (
    "out_channels",
    "num_attention_heads",
    "attention_head_dim",
    "num_layers",
    "mlp_ratio",
    "text_embed_dim",
    "adaln_lora_dim",
    "patch_size",
    "rope_scale",
    "extra_pos_embed_type",
    "use_crossattn_projection",
    "crossattn_proj_in_channels",
    "encoder_hidden_states_channels",
)
_VAE_FIELDS = ("base_dim", "z_dim", "dim_mult", "num_res_blocks", "temperal_downsample")
_LISTED = 8  # weight names shown per kind of problem; the count is always given


def condition_mask(latents: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, h, w]: 1 on latent frame 0 (the clean conditioning frame), 0 elsewhere."""
    b, _, t, h, w = latents.shape
    mask = torch.zeros((b, 1, t, h, w), dtype=latents.dtype, device=latents.device)
    mask[:, :, 0] = 1.0
    return mask


def transformer_input(latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents [B, C, T, h, w] -> [B, C + 2, T, h, w] with the mask channels."""
    padding = torch.zeros_like(latents[:, :1])
    return torch.cat([latents, condition_mask(latents), padding], dim=1)


def frame_timesteps(sigma: torch.Tensor, frames: int, cond_timestep: float) -> torch.Tensor:
    """Per-sample future sigma [B] -> per-frame timesteps [B, 1, T, 1, 1] (frame 0 conditioning)."""
    t = sigma.reshape(-1, 1, 1, 1, 1).expand(-1, 1, frames, 1, 1).clone()
    t[:, :, 0] = cond_timestep
    return t


class VideoBackbone(nn.Module):
    """VAE (frozen) + video DiT + the latent normalisation that sits between them."""

    def __init__(self, cfg: ModelConfig, transformer: CosmosTransformer3DModel, vae: AutoencoderKLWan):
        super().__init__()
        self.cfg = cfg
        self.transformer = transformer
        self.vae = vae
        self.vae.requires_grad_(False)
        z = cfg.vae.z_dim
        # Persistent: the checkpoint carries the statistics its weights were trained with.
        self.register_buffer("latents_mean", torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1))
        self.register_buffer("latents_std", torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1))

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> VideoBackbone:
        return cls(cfg, CosmosTransformer3DModel(**cfg.transformer_kwargs()), AutoencoderKLWan(**cfg.vae_kwargs()))

    @classmethod
    def from_cosmos(cls, cfg: ModelConfig, path: str | Path) -> VideoBackbone:
        """Cosmos-Predict2.5 weights from a local diffusers-format folder (`transformer/`, `vae/`)."""
        root = Path(path)
        for sub in ("transformer", "vae"):
            if not (root / sub / "config.json").is_file():
                raise FileNotFoundError(f"{root}: no {sub}/config.json; expected a diffusers-format Cosmos folder")
        _check_fields(root / "transformer", CosmosTransformer3DModel, cfg.transformer_kwargs(), _TRANSFORMER_FIELDS)
        _check_fields(root / "vae", AutoencoderKLWan, cfg.vae_kwargs(), _VAE_FIELDS)
        stored = CosmosTransformer3DModel.load_config(root / "transformer")
        channels = stored["in_channels"] + int(stored["concat_padding_mask"])
        if channels != cfg.vae.z_dim + 2:
            raise ValueError(
                f"{root / 'transformer'} takes {channels} input channels (in_channels + padding mask); "
                f"the preset needs {cfg.vae.z_dim + 2} (latents + condition mask + padding mask)"
            )
        transformer = _from_pretrained(
            CosmosTransformer3DModel, root / "transformer", in_channels=cfg.vae.z_dim + 2, concat_padding_mask=False
        )
        vae = _from_pretrained(AutoencoderKLWan, root / "vae")
        return cls(cfg, transformer, vae)

    # -- VAE ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, T, H, W] in [-1, 1] -> normalised latents [B, C, 1 + (T - 1) / 4, H/8, W/8].

        The posterior mode, as the Cosmos pipeline. The VAE is causal: latent frame 0 depends on
        pixel frame 0 only, so encoding the current frame alone gives the same first latent.
        """
        z = self.vae.encode(video.to(self.latents_mean.dtype)).latent_dist.mode()
        return (z - self.latents_mean) / self.latents_std

    @torch.no_grad()
    def encode_current(self, frames: torch.Tensor) -> torch.Tensor:
        """The current frames [B, 3, H, W] alone -> their normalised latent [B, C, 1, h, w]: the
        first latent of `encode` on any clip that starts with them, computed as a 2D network."""
        z = encode_first_frame(self.vae, frames.to(self.latents_mean.dtype).unsqueeze(2))
        return (z - self.latents_mean) / self.latents_std

    # -- transformer -------------------------------------------------------------------------------
    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Full DiT: noisy latents [B, C, T, h, w] (frame 0 clean), future sigma [B], raw text
        embeddings [B, L, text.out_dim] -> predicted velocity [B, C, T, h, w]."""
        timesteps = frame_timesteps(sigma, latents.shape[2], self.cfg.video.cond_timestep)
        return self.transformer(transformer_input(latents), timesteps, text.to(latents.dtype), return_dict=False)[0]

    def hooked_features(self, latents: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The release's way: run every block, capture the extraction block's output with a hook."""
        captured: list[torch.Tensor] = []
        block = self.transformer.transformer_blocks[self.cfg.video.extract_block]
        handle = block.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.velocity(latents, sigma, text)
        finally:
            handle.remove()
        return captured[0]

    def project_text(self, text: torch.Tensor) -> torch.Tensor:
        """Raw text embeddings -> the DiT's cross-attention context. Depends on the text only, so the
        fast path computes it once per instruction."""
        return self.transformer.crossattn_proj(text.to(self.latents_mean.dtype))

    def trunk(self, cond_latent: torch.Tensor, future: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Blocks 0..extract_block only, at the extraction sigma: clean conditioning latent
        [B, C, 1, h, w], future latents [B, C, T - 1, h, w] (noise at inference), projected text
        context [B, L, text_embed_dim] -> tokens [B, T * h/ph * w/pw, width]."""
        return run_trunk(self.transformer, self.cfg, cond_latent, future, context)


def run_trunk(
    transformer: CosmosTransformer3DModel,
    cfg: ModelConfig,
    cond_latent: torch.Tensor,
    future: torch.Tensor,
    context: torch.Tensor,
) -> torch.Tensor:
    """diffusers' forward up to the extraction block, with the same weights and arithmetic except
    that the AdaLN modulations are computed once per latent frame instead of once per token (every
    token of a frame shares its timestep; diffusers expands first and then runs the AdaLN MLPs on
    all 588 rows)."""
    latents = torch.cat([cond_latent, future], dim=2)
    b, _, frames, height, width = latents.shape
    x = transformer_input(latents)
    rope = transformer.rope(x, fps=None)
    sigma = torch.full((b,), cfg.video.extract_sigma, dtype=torch.float32, device=latents.device)
    timesteps = frame_timesteps(sigma, frames, cfg.video.cond_timestep)

    h = transformer.patch_embed(x).flatten(1, 3)
    temb, emb = transformer.time_embed(h, timesteps.flatten())
    temb, emb = temb.view(b, frames, -1), emb.view(b, frames, -1)
    for block in transformer.transformer_blocks[: cfg.video.extract_block + 1]:
        h = _block_forward(block, h, context, emb, temb, rope, frames)
    return h


def _modulate(norm: nn.Module, h: torch.Tensor, emb: torch.Tensor, temb: torch.Tensor, frames: int):
    """CosmosAdaLayerNormZero with per-frame shift/scale/gate: h [B, N, C], emb [B, T, C]."""
    b, n, c = h.shape
    mod = norm.linear_2(norm.linear_1(norm.activation(emb))) + temb
    shift, scale, gate = (m.unsqueeze(2) for m in mod.chunk(3, dim=-1))
    out = norm.norm(h).view(b, frames, n // frames, c) * (1 + scale) + shift
    return out.view(b, n, c), gate


def _gated_add(h: torch.Tensor, gate: torch.Tensor, update: torch.Tensor, frames: int) -> torch.Tensor:
    b, n, c = h.shape
    return h + (gate * update.view(b, frames, n // frames, c)).view(b, n, c)


def _block_forward(block, h, context, emb, temb, rope, frames):
    y, gate = _modulate(block.norm1, h, emb, temb, frames)
    h = _gated_add(h, gate, block.attn1(y, image_rotary_emb=rope), frames)
    y, gate = _modulate(block.norm2, h, emb, temb, frames)
    h = _gated_add(h, gate, block.attn2(y, encoder_hidden_states=context), frames)
    y, gate = _modulate(block.norm3, h, emb, temb, frames)
    return _gated_add(h, gate, block.ff(y), frames)


class VideoTrunk(nn.Module):
    """Export boundary: the video DiT up to the extraction block as a tensor-only module
    (cond latent, future latents, projected text context) -> video tokens."""

    def __init__(self, backbone: VideoBackbone):
        super().__init__()
        self.transformer = backbone.transformer
        self.cfg = backbone.cfg

    def forward(self, cond_latent: torch.Tensor, future: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return run_trunk(self.transformer, self.cfg, cond_latent, future, context)


def _from_pretrained(cls: type, folder: Path, **overrides):
    """`cls.from_pretrained(folder)` in float32, refusing a folder whose weights do not fit exactly.
    diffusers only logs missing and unexpected weights (a missing one is left on the meta device,
    which fails much later) and raises on the first shape mismatch; here all are named at once."""
    # ignore_mismatched_sizes makes diffusers report every mismatch instead of raising on the
    # first; any mismatch is refused below, so no skipped weight is ever used.
    model, info = cls.from_pretrained(
        folder,
        local_files_only=True,
        torch_dtype=torch.float32,
        output_loading_info=True,
        ignore_mismatched_sizes=True,
        **overrides,
    )
    mismatched = sorted(f"{k}: folder {list(got)} vs model {list(want)}" for k, got, want in info["mismatched_keys"])
    problems = [
        f"{len(names)} {kind}: {', '.join(names[:_LISTED])}{' ...' if len(names) > _LISTED else ''}"
        for kind, names in (
            ("missing", sorted(info["missing_keys"])),
            ("unexpected", sorted(info["unexpected_keys"])),
            ("shape-mismatched", mismatched),
        )
        if names
    ]
    if problems:
        raise ValueError(f"{folder}: the {cls.__name__} weights do not fit the preset: " + "; ".join(problems))
    return model


def _check_fields(folder: Path, cls: type, expected: dict, fields: tuple[str, ...]) -> None:
    stored = cls.load_config(folder)
    bad = []
    for name in fields:
        want, got = expected[name], stored.get(name)
        if isinstance(want, tuple | list) and isinstance(got, tuple | list):
            want, got = list(want), list(got)
        if want != got:
            bad.append(f"{name}: preset {want!r}, folder {got!r}")
    if bad:
        raise ValueError(f"{folder} does not match the preset: " + "; ".join(bad))
