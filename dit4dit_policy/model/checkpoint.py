"""Checkpoints: one folder holding everything serving needs, nothing else.

model.safetensors   every weight and persistent buffer of DiT4DiT (video DiT, VAE, action DiT);
                    its metadata names the preset and, when known, the text encoder (`TextEncoder.name`)
config.yaml         the resolved preset the weights belong to
norm_stats.json     the action normalisation statistics (serving reads them only from here)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from dit4dit_policy.files import staged_folder
from dit4dit_policy.model.config import ModelConfig
from dit4dit_policy.model.dit4dit import DiT4DiT, build_model
from dit4dit_policy.preprocessing import NormStats

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
NORM_STATS = "norm_stats.json"
TEXT_ENCODER_KEY = "text_encoder"  # safetensors metadata key
_LISTED = 8  # names shown per kind of mismatch; the count is always given


def save_checkpoint(
    model: DiT4DiT,
    norm_stats: NormStats,
    folder: str | Path,
    *,
    text_encoder_name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the checkpoint folder. An existing folder is replaced only with `overwrite=True`;
    the files are written next to it first, so a failed save never leaves a half checkpoint.

    `text_encoder_name`: the `.name` of the text encoder the model was trained with; inference
    then refuses any other. Defaults to the one the model was loaded with, if any."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"checkpoint folder {folder} already exists; pass overwrite=True to replace it")
    if text_encoder_name is None:
        text_encoder_name = model.text_encoder_name
    elif not isinstance(text_encoder_name, str) or not text_encoder_name:
        raise ValueError(f"text_encoder_name must be a non-empty string (TextEncoder.name), got {text_encoder_name!r}")
    if norm_stats.dims != model.cfg.action.real_dim:
        raise ValueError(
            f"norm_stats cover {norm_stats.dims} action dims but preset {model.cfg.name!r} has "
            f"{model.cfg.action.real_dim}"
        )
    with staged_folder(folder) as staging:
        weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        metadata = {"preset": model.cfg.name}
        if text_encoder_name is not None:
            metadata[TEXT_ENCODER_KEY] = text_encoder_name
        save_file(weights, staging / WEIGHTS, metadata=metadata)
        (staging / CONFIG).write_text(yaml.safe_dump(model.cfg.to_dict(), sort_keys=False))
        (staging / NORM_STATS).write_text(json.dumps(norm_stats.to_dict(), indent=2))
    return folder


def read_checkpoint_config(folder: str | Path) -> ModelConfig:
    """The resolved preset a checkpoint was made with, without loading its weights."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder: missing {CONFIG}")
    return ModelConfig.from_dict(yaml.safe_load(path.read_text()), source=str(path))


def load_checkpoint(
    folder: str | Path, *, preset: str | None = None, device: str | torch.device = "cpu"
) -> tuple[DiT4DiT, NormStats]:
    """The model (eval mode) and its normalisation statistics. With `preset`, a checkpoint made
    with another preset is refused. Weights must match the config exactly: every missing,
    unexpected or differently shaped tensor is named. The recorded text encoder name, if any,
    ends up in `model.text_encoder_name`."""
    folder = Path(folder)
    missing_files = [name for name in (WEIGHTS, CONFIG, NORM_STATS) if not (folder / name).is_file()]
    if missing_files:
        raise FileNotFoundError(f"{folder} is not a checkpoint folder: missing {', '.join(missing_files)}")
    cfg = read_checkpoint_config(folder)
    if preset is not None and cfg.name != preset:
        raise ValueError(f"checkpoint {folder} was made with preset {cfg.name!r}, not the requested {preset!r}")
    norm_stats = NormStats.from_dict(json.loads((folder / NORM_STATS).read_text()))
    if norm_stats.dims != cfg.action.real_dim:
        raise ValueError(
            f"{folder / NORM_STATS} covers {norm_stats.dims} action dims; its config has {cfg.action.real_dim}"
        )

    # Shapes only first: no time spent on a random initialisation the weights replace anyway. The
    # weights are then copied tensor by tensor into fresh allocations: peak memory stays one model
    # plus one tensor, and the parameters get the allocator's alignment, not the file's (CPU GEMM
    # kernels round differently on misaligned data, which would break bit-exact reloads).
    model = build_model(cfg, device="meta")
    with safe_open(folder / WEIGHTS, framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        check_state_dict(model, shapes, f"{folder / WEIGHTS} (preset {cfg.name!r})")
        model.to_empty(device=device)
        state = model.state_dict()
        with torch.no_grad():
            for k in shapes:
                state[k].copy_(f.get_tensor(k))
        model.text_encoder_name = (f.metadata() or {}).get(TEXT_ENCODER_KEY)
    return model.eval(), norm_stats


def check_state_dict(model: torch.nn.Module, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """Raise ValueError listing every missing, unexpected and differently shaped tensor."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = shapes
    missing = sorted(expected.keys() - got.keys())
    unexpected = sorted(got.keys() - expected.keys())
    reshaped = sorted(
        f"{k}: checkpoint {list(got[k])} vs model {list(expected[k])}"
        for k in expected.keys() & got.keys()
        if got[k] != expected[k]
    )
    problems = [
        f"{len(names)} {kind}: {', '.join(names[:_LISTED])}{' ...' if len(names) > _LISTED else ''}"
        for kind, names in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", reshaped))
        if names
    ]
    if problems:
        raise ValueError(f"{source} does not fit the model: " + "; ".join(problems))
