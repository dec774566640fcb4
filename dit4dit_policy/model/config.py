"""Model presets: YAML files `config/model_<name>.yaml`, validated into frozen dataclasses.

Every dimension the rest of the stack needs (latent grid, token count, padded action and state
sizes) is derived here and nowhere else; the data pipeline and the policy ask `ModelConfig`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from dit4dit_policy.config import config_dir, load_yaml

_PRESET_FILE = re.compile(r"^model_(?P<name>[A-Za-z0-9_-]+)\.yaml$")
TEXT_KINDS = ("hash", "cosmos_reason")


def _positive(where: str, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{where}.{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class ObservationConfig:
    """What one training sample / one query shows the model."""

    image_size: int  # square frames after resizing, pixels
    num_frames: int  # current frame + future frames (the video loss targets)
    frame_stride: int  # dataset frames between consecutive video frames (read by the data pipeline)

    def __post_init__(self) -> None:
        _positive("observation", **dataclasses.asdict(self))
        if self.num_frames < 2:
            raise ValueError(f"observation.num_frames must be >= 2 (current + future), got {self.num_frames}")


@dataclass(frozen=True)
class StateConfig:
    joints: int  # raw joint angles in, radians
    dim: int  # [sin q, cos q] features, zero-padded to this size

    def __post_init__(self) -> None:
        _positive("state", **dataclasses.asdict(self))
        if self.dim < 2 * self.joints:
            raise ValueError(f"state.dim {self.dim} cannot hold sin and cos of {self.joints} joints")


@dataclass(frozen=True)
class ActionConfig:
    real_dim: int  # action dims the robot executes
    dim: int  # padded size the model works in; the padding is masked out of the loss
    horizon: int  # actions per chunk

    def __post_init__(self) -> None:
        _positive("action", **dataclasses.asdict(self))
        if self.dim < self.real_dim:
            raise ValueError(f"action.dim {self.dim} is smaller than action.real_dim {self.real_dim}")


@dataclass(frozen=True)
class VideoConfig:
    """The Cosmos video DiT (diffusers `CosmosTransformer3DModel`) and where features come from."""

    num_layers: int
    num_heads: int
    head_dim: int
    mlp_ratio: float
    adaln_lora_dim: int
    patch_size: tuple[int, int, int]  # (time, height, width) over latents
    rope_scale: tuple[float, float, float]
    text_embed_dim: int  # width of the text context after the DiT's own projection
    extract_block: int  # 0-based index of the block whose output feeds the action DiT
    extract_sigma: float  # flow sigma of the future latents in the extraction pass
    cond_timestep: float  # timestep given to the clean conditioning frame

    def __post_init__(self) -> None:
        _positive(
            "video",
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            mlp_ratio=self.mlp_ratio,
            adaln_lora_dim=self.adaln_lora_dim,
            text_embed_dim=self.text_embed_dim,
        )
        if len(self.patch_size) != 3 or self.patch_size[0] != 1:
            # Per-frame timesteps (the conditioning frame is clean) need one latent frame per token.
            raise ValueError(f"video.patch_size must be (1, ph, pw), got {self.patch_size}")
        _positive("video.patch_size", h=self.patch_size[1], w=self.patch_size[2])
        if len(self.rope_scale) != 3:
            raise ValueError(f"video.rope_scale must have 3 entries, got {self.rope_scale}")
        if self.head_dim < 12:
            raise ValueError(f"video.head_dim must be >= 12 to split across the 3D RoPE axes, got {self.head_dim}")
        if not 0 <= self.extract_block < self.num_layers:
            raise ValueError(
                f"video.extract_block {self.extract_block} is not a block index (0..{self.num_layers - 1})"
            )
        if not 0.0 < self.extract_sigma <= 1.0:
            raise ValueError(f"video.extract_sigma must be in (0, 1], got {self.extract_sigma}")
        if not 0.0 <= self.cond_timestep < 1.0:
            raise ValueError(f"video.cond_timestep must be in [0, 1), got {self.cond_timestep}")

    @property
    def width(self) -> int:
        return self.num_heads * self.head_dim


@dataclass(frozen=True)
class VaeConfig:
    """The Wan 2.1 causal video VAE (diffusers `AutoencoderKLWan`)."""

    base_dim: int
    z_dim: int
    dim_mult: tuple[int, ...]
    num_res_blocks: int
    temporal_downsample: tuple[bool, ...]

    def __post_init__(self) -> None:
        _positive("vae", base_dim=self.base_dim, z_dim=self.z_dim, num_res_blocks=self.num_res_blocks)
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(
                f"vae.temporal_downsample needs {len(self.dim_mult) - 1} entries (one per downsampling "
                f"stage), got {len(self.temporal_downsample)}"
            )

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)


@dataclass(frozen=True)
class ActionDiTConfig:
    """GR00T-style flow-matching head."""

    num_layers: int  # even blocks cross-attend to the video tokens, odd blocks self-attend
    width: int
    num_heads: int
    ffn_mult: int
    dropout: float
    timestep_dim: int  # sinusoidal features of the discretised action timestep
    state_hidden: int
    decoder_hidden: int

    def __post_init__(self) -> None:
        _positive(
            "action_dit",
            **{k: v for k, v in dataclasses.asdict(self).items() if k != "dropout"},
        )
        if self.width % self.num_heads:
            raise ValueError(f"action_dit.width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.timestep_dim % 2 or self.width % 2:
            raise ValueError("action_dit.timestep_dim and width must be even (sin/cos halves)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"action_dit.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class TextConfig:
    """Passed as a dict to `dit4dit_policy.model.text.build_text_encoder`."""

    kind: str
    out_dim: int
    max_tokens: int
    path: str | None
    cache_dir: str | None
    cache_entries: int  # instructions kept in memory: out_dim * max_tokens * 4 bytes each

    def __post_init__(self) -> None:
        if self.kind not in TEXT_KINDS:
            raise ValueError(f"text.kind {self.kind!r} is unknown; known: {', '.join(TEXT_KINDS)}")
        _positive("text", out_dim=self.out_dim, max_tokens=self.max_tokens)
        if isinstance(self.cache_entries, bool) or not isinstance(self.cache_entries, int) or self.cache_entries < 1:
            raise ValueError(f"text.cache_entries must be an int >= 1, got {self.cache_entries!r}")

    def encoder_config(self, **overrides: Any) -> dict[str, Any]:
        """The mapping `build_text_encoder` takes; unset (None) fields are left out, and a deployment
        supplies machine-specific ones (e.g. `path=...`) as overrides."""
        merged = {**dataclasses.asdict(self), **overrides}
        return {k: v for k, v in merged.items() if v is not None}


@dataclass(frozen=True)
class TrainingConfig:
    video_loss_weight: float
    action_noise_draws: int  # (noise, tau) draws per sample, sharing that sample's video features
    action_tau_alpha: float  # s ~ Beta(alpha, 1): skewed toward tau = 1 (noise)
    action_tau_scale: float  # tau_a = s / scale

    def __post_init__(self) -> None:
        _positive(
            "training",
            action_noise_draws=self.action_noise_draws,
            action_tau_alpha=self.action_tau_alpha,
            action_tau_scale=self.action_tau_scale,
        )
        if self.video_loss_weight < 0:
            raise ValueError(f"training.video_loss_weight must be >= 0, got {self.video_loss_weight}")
        if not isinstance(self.action_noise_draws, int):
            raise ValueError(f"training.action_noise_draws must be an int, got {self.action_noise_draws!r}")


@dataclass(frozen=True)
class SamplingConfig:
    steps: int  # Euler steps on the action chunk

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"sampling.steps must be an int >= 1, got {self.steps!r}")


_SECTIONS: dict[str, type] = {
    "observation": ObservationConfig,
    "state": StateConfig,
    "action": ActionConfig,
    "video": VideoConfig,
    "vae": VaeConfig,
    "action_dit": ActionDiTConfig,
    "text": TextConfig,
    "training": TrainingConfig,
    "sampling": SamplingConfig,
}


@dataclass(frozen=True)
class ModelConfig:
    name: str
    observation: ObservationConfig
    state: StateConfig
    action: ActionConfig
    video: VideoConfig
    vae: VaeConfig
    action_dit: ActionDiTConfig
    text: TextConfig
    training: TrainingConfig
    sampling: SamplingConfig

    def __post_init__(self) -> None:
        o, v, vae = self.observation, self.video, self.vae
        if (o.num_frames - 1) % vae.temporal_factor:
            raise ValueError(
                f"observation.num_frames - 1 = {o.num_frames - 1} must be a multiple of the VAE's temporal "
                f"factor {vae.temporal_factor}"
            )
        grid = vae.spatial_factor * math.lcm(*v.patch_size[1:])
        if o.image_size % grid:
            raise ValueError(f"observation.image_size {o.image_size} must be a multiple of {grid} (VAE x patch)")

    # Derived dimensions: the one place they are computed.
    @property
    def latent_frames(self) -> int:
        return (self.observation.num_frames - 1) // self.vae.temporal_factor + 1

    @property
    def future_latent_frames(self) -> int:
        return self.latent_frames - 1

    @property
    def latent_size(self) -> int:
        return self.observation.image_size // self.vae.spatial_factor

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """(channels, frames, height, width) of one sample's latent video."""
        return (self.vae.z_dim, self.latent_frames, self.latent_size, self.latent_size)

    @property
    def tokens_per_frame(self) -> int:
        _, ph, pw = self.video.patch_size
        return (self.latent_size // ph) * (self.latent_size // pw)

    @property
    def num_video_tokens(self) -> int:
        return self.latent_frames * self.tokens_per_frame

    def transformer_kwargs(self) -> dict[str, Any]:
        """`CosmosTransformer3DModel` arguments. The padding-mask channel is counted in `in_channels`
        and concatenated by us (diffusers would resize it with torchvision)."""
        v = self.video
        return {
            "in_channels": self.vae.z_dim + 2,
            "out_channels": self.vae.z_dim,
            "num_attention_heads": v.num_heads,
            "attention_head_dim": v.head_dim,
            "num_layers": v.num_layers,
            "mlp_ratio": v.mlp_ratio,
            "text_embed_dim": v.text_embed_dim,
            "adaln_lora_dim": v.adaln_lora_dim,
            "max_size": (128, 240, 240),
            "patch_size": tuple(v.patch_size),
            "rope_scale": tuple(v.rope_scale),
            "concat_padding_mask": False,
            "extra_pos_embed_type": None,
            "use_crossattn_projection": True,
            "crossattn_proj_in_channels": self.text.out_dim,
            "encoder_hidden_states_channels": v.text_embed_dim,
        }

    def vae_kwargs(self) -> dict[str, Any]:
        """`AutoencoderKLWan` arguments; the latent mean/std default to the Wan 2.1 statistics."""
        a = self.vae
        return {
            "base_dim": a.base_dim,
            "z_dim": a.z_dim,
            "dim_mult": list(a.dim_mult),
            "num_res_blocks": a.num_res_blocks,
            "temperal_downsample": list(a.temporal_downsample),
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for section in _SECTIONS:
            values = dataclasses.asdict(getattr(self, section))
            out[section] = {k: list(x) if isinstance(x, tuple) else x for k, x in values.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "preset") -> ModelConfig:
        if not isinstance(data, dict):
            raise ValueError(f"{source}: a model config must be a mapping, got {type(data).__name__}")
        expected = {"name", *_SECTIONS}
        missing, unknown = expected - data.keys(), data.keys() - expected
        if missing or unknown:
            raise ValueError(f"{source}: sections missing {sorted(missing)}, unknown {sorted(map(str, unknown))}")
        if not isinstance(data["name"], str) or not data["name"]:
            raise ValueError(f"{source}: name must be a non-empty string, got {data['name']!r}")
        sections = {key: _section(kind, data[key], f"{source}: {key}") for key, kind in _SECTIONS.items()}
        try:
            return cls(name=data["name"], **sections)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from e


def _section(kind: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(kind)}
    missing, unknown = fields.keys() - data.keys(), data.keys() - fields.keys()
    if missing or unknown:
        raise ValueError(f"{where}: fields missing {sorted(missing)}, unknown {sorted(map(str, unknown))}")
    values = {
        k: tuple(x) if isinstance(x, list) and str(fields[k].type).startswith("tuple") else x for k, x in data.items()
    }
    try:
        return kind(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e


def known_presets() -> list[str]:
    return sorted(m["name"] for p in config_dir().glob("model_*.yaml") if (m := _PRESET_FILE.match(p.name)))


def load_preset(name: str) -> ModelConfig:
    """The preset `config/model_<name>.yaml`, validated."""
    known = known_presets()
    if name not in known:
        raise ValueError(f"unknown model preset {name!r}; known presets: {', '.join(known) or '(none)'}")
    data = load_yaml(f"model_{name}.yaml")
    cfg = ModelConfig.from_dict(data, source=f"model_{name}.yaml")
    if cfg.name != name:
        raise ValueError(f"model_{name}.yaml declares name {cfg.name!r}; it must match the file name")
    return cfg
