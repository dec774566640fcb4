"""The one preprocessing path shared by training, the ROS policy node and offline evaluation.

Whatever the model sees online must be exactly what it saw in training, so every transform between
robot data and model tensors lives here, once, as pairs where a pair exists (normalise/unnormalise):

- camera frames: `image_to_model` / `images_to_model` (uint8 ROS-encoded pixels -> [-1, 1] RGB),
  built on `images_to_rgb`; camera messages to pixels: `raw_image_array` (sensor_msgs/Image fields)
  and `decode_compressed_image` (sensor_msgs/CompressedImage data),
- joint state: `state_features` (raw angles -> [sin, cos], zero-padded),
- actions: `NormStats` (computed on the training set, saved inside the checkpoint) and
  `ActionNormalizer` (min-max to [-1, 1] and back, with clipping).

No ROS imports: the node converts messages to numpy and calls these.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

# ROS sensor_msgs/Image encodings we accept -> (channels, index of R, G, B in the pixel).
# Alpha is dropped: camera alpha is constant, and the model was trained on opaque RGB.
# mono8 is replicated to three channels, so a grey camera gives the grey RGB image the model knows.
_ENCODINGS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)


def images_to_rgb(images: np.ndarray, encoding: str) -> np.ndarray:
    """Many frames in a ROS encoding: uint8 [N, H, W, C] (mono8 also [N, H, W]) -> uint8 [N, H, W, 3]
    RGB. Alpha is dropped and mono replicated; the pixel values themselves are untouched."""
    if encoding not in _ENCODINGS:
        raise ValueError(f"unknown image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, rgb_index = _ENCODINGS[encoding]
    if not isinstance(images, np.ndarray):
        raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise ValueError(f"{encoding} images must be uint8, got dtype {images.dtype}")
    if channels == 1 and images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(
            f"{encoding} frames must be [N, H, W, {channels}]"
            f"{' or [N, H, W]' if channels == 1 else ''}, got shape {images.shape}"
        )
    n, height, width, got_channels = images.shape
    if got_channels != channels:
        raise ValueError(
            f"{encoding} needs {channels} channel(s) per pixel, got {got_channels} (shape {images.shape})"
        )
    if n == 0 or height == 0 or width == 0:
        raise ValueError(f"empty image batch: shape {images.shape}")
    if rgb_index == (0, 1, 2) and channels == 3:
        return images
    return images[..., list(rgb_index)]


def images_to_model(images: np.ndarray, encoding: str, size: int) -> torch.Tensor:
    """Many frames of one size at once: uint8 [N, H, W, C] (mono8 also [N, H, W]) -> float32
    [N, 3, size, size] RGB in [-1, 1].

    The whole frame is resized to size x size, no crop: DiT4DiT's frames are "resized to 224x224",
    and a crop would cut the edges of a 640x480 head camera's view, where the hands often are. The
    4:3 -> 1:1 squash is the same in training and serving, since both come through here. Bilinear
    with antialiasing: shrinking 640x480 by ~3x without it would alias fine texture.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    rgb = images_to_rgb(images, encoding)
    pixels = torch.from_numpy(np.ascontiguousarray(rgb))
    # Channels first for interpolate.
    planes = pixels.permute(0, 3, 1, 2).to(torch.float32)
    resized = F.interpolate(planes, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    # The antialiasing filter's weights are non-negative and sum to one, so only float rounding can
    # step outside [0, 255]; the clamp removes that.
    return (resized / 127.5 - 1.0).clamp_(-1.0, 1.0)


def image_to_model(image: np.ndarray, encoding: str, size: int) -> torch.Tensor:
    """One frame: uint8 HxWxC (mono8 also HxW) in a ROS encoding -> float32 [3, size, size] RGB in
    [-1, 1]. Runs the batched path with N = 1, so a frame comes out identical either way."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise ValueError(f"an image must be HxWxC or HxW, got shape {image.shape}")
    return images_to_model(image[None], encoding, size)[0]


def raw_image_array(data: Any, height: int, width: int, step: int, encoding: str) -> np.ndarray:
    """The pixels of a sensor_msgs/Image (its fields) as uint8 HxWxC (HxWx1 for mono8), without the
    row padding `step` may add."""
    if encoding not in _ENCODINGS:
        raise ValueError(f"unknown image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels = _ENCODINGS[encoding][0]
    buffer = np.frombuffer(data, dtype=np.uint8)
    if height < 1 or width < 1 or step < width * channels or buffer.size != height * step:
        raise ValueError(
            f"{encoding} image of {width}x{height} with step {step} needs {height * step} bytes and "
            f"step >= {width * channels}; got {buffer.size} bytes"
        )
    return buffer.reshape(height, step)[:, : width * channels].reshape(height, width, channels)


def decode_compressed_image(data: Any) -> np.ndarray:
    """The data of a sensor_msgs/CompressedImage (JPEG or PNG) as uint8 HxWx3 RGB, encoding rgb8."""
    from PIL import Image, UnidentifiedImageError  # only compressed camera streams need it

    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot decode compressed image ({len(data)} bytes): {e}") from e


def state_features(q: np.ndarray, dim: int) -> np.ndarray:
    """Raw joint angles [..., J] -> float32 [..., dim]: all J sines, then all J cosines, then zeros.

    sin/cos makes the feature continuous across the +-pi wrap. The order (sines block, cosines
    block) is fixed here for training and serving alike; the DiT4DiT release is inconsistent.
    """
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    q = np.asarray(q)
    if q.ndim < 1 or q.shape[-1] == 0:
        raise ValueError(f"joint angles must be [..., J] with J >= 1, got shape {q.shape}")
    if not np.issubdtype(q.dtype, np.floating) and not np.issubdtype(q.dtype, np.integer):
        raise ValueError(f"joint angles must be numeric, got dtype {q.dtype}")
    joints = q.shape[-1]
    if 2 * joints > dim:
        raise ValueError(f"{joints} joints need {2 * joints} state features but dim is {dim}")
    # Computed in float64 so that float32 and float64 inputs holding the same angles agree.
    q64 = q.astype(np.float64)
    bad = ~np.isfinite(q64)
    if bad.any():
        joints_bad = sorted(set(np.nonzero(bad)[-1].tolist()))
        raise ValueError(f"joint angles contain NaN or inf at joint index(es) {joints_bad}")
    out = np.zeros((*q.shape[:-1], dim), dtype=np.float32)
    out[..., :joints] = np.sin(q64)
    out[..., joints : 2 * joints] = np.cos(q64)
    return out


# A dimension that never moved in the training data (an unused gripper, a locked joint) has
# max == min and no scale. Such dims are widened to centre +- this half-width: the constant then
# normalises to exactly 0 and back to itself, and 1e-3 (rad, or gripper units) is well below any
# command resolution while keeping float32 arithmetic on the normalised value accurate.
DEGENERATE_HALF_WIDTH = 1e-3


@dataclass(frozen=True, eq=False)
class NormStats:
    """Per-dimension action range over the real (unpadded) action dims.

    Computed once on the training set, saved inside the checkpoint (`to_dict`), and read back by
    serving only from there (`from_dict`). Joint-state features need no statistics: sin/cos are
    already in [-1, 1].
    """

    action_min: np.ndarray
    action_max: np.ndarray

    def __post_init__(self) -> None:
        lo = _stat_vector("action_min", self.action_min)
        hi = _stat_vector("action_max", self.action_max)
        if lo.shape != hi.shape:
            raise ValueError(f"action_min has {lo.size} dims but action_max has {hi.size}")
        bad = np.nonzero(~(hi > lo))[0]
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"action_max must exceed action_min in every dim; dim {i}: min {float(lo[i])}, "
                f"max {float(hi[i])} ({bad.size} bad dim(s)). NormStats.compute widens constant "
                "dims; hand-written stats must too."
            )
        # Frozen means frozen: the arrays are private read-only copies.
        object.__setattr__(self, "action_min", lo)
        object.__setattr__(self, "action_max", hi)

    # Arrays have no single truth value, so equality and hashing compare the values explicitly.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NormStats):
            return NotImplemented
        return np.array_equal(self.action_min, other.action_min) and np.array_equal(
            self.action_max, other.action_max
        )

    def __hash__(self) -> int:
        return hash((self.action_min.tobytes(), self.action_max.tobytes()))

    @property
    def dims(self) -> int:
        return int(self.action_min.size)

    @classmethod
    def compute(cls, actions: np.ndarray) -> NormStats:
        """Per-dim min and max of [N, A] actions; dims narrower than 2 * DEGENERATE_HALF_WIDTH are
        widened to their centre +- DEGENERATE_HALF_WIDTH."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"actions must be [N, A] with N, A >= 1, got shape {a.shape}")
        if not np.isfinite(a).all():
            rows = np.nonzero(~np.isfinite(a).all(axis=1))[0]
            raise ValueError(f"actions contain NaN or inf in {rows.size} row(s), first at row {int(rows[0])}")
        return cls.from_range(a.min(axis=0), a.max(axis=0))

    @classmethod
    def from_range(cls, action_min: Any, action_max: Any) -> NormStats:
        """Stats from a per-dim observed range (as a dataset's statistics store it), with `compute`'s
        widening of dims narrower than 2 * DEGENERATE_HALF_WIDTH."""
        lo = _stat_vector("action_min", action_min)
        hi = _stat_vector("action_max", action_max)
        if lo.shape != hi.shape:
            raise ValueError(f"action_min has {lo.size} dims but action_max has {hi.size}")
        if np.any(hi < lo):
            raise ValueError(f"action_max is below action_min in dim(s) {np.nonzero(hi < lo)[0].tolist()}")
        narrow = hi - lo < 2 * DEGENERATE_HALF_WIDTH
        centre = (lo + hi) / 2
        lo = np.where(narrow, centre - DEGENERATE_HALF_WIDTH, lo)
        hi = np.where(narrow, centre + DEGENERATE_HALF_WIDTH, hi)
        return cls(action_min=lo, action_max=hi)

    def to_dict(self) -> dict[str, list[float]]:
        return {"action_min": self.action_min.tolist(), "action_max": self.action_max.tolist()}

    @classmethod
    def from_dict(cls, data: Any) -> NormStats:
        if not isinstance(data, dict):
            raise ValueError(f"normalisation stats must be a mapping, got {type(data).__name__}")
        expected = {"action_min", "action_max"}
        missing, unknown = expected - data.keys(), data.keys() - expected
        if missing or unknown:
            raise ValueError(
                f"normalisation stats need exactly {sorted(expected)}; "
                f"missing {sorted(missing)}, unknown {sorted(map(str, unknown))}"
            )
        return cls(action_min=data["action_min"], action_max=data["action_max"])


def _stat_vector(name: str, value: Any) -> np.ndarray:
    try:
        v = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a list of numbers: {e}") from e
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D list of numbers, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} has NaN or inf at index(es) {np.nonzero(~np.isfinite(v))[0].tolist()}")
    v.flags.writeable = False
    return v


ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


class ActionNormalizer:
    """Min-max normalisation of the real action dims to [-1, 1], zero-padded to the model's
    `action_dim`, and its inverse. Works on numpy arrays and torch tensors of any float dtype,
    returning the input's type, dtype and device.

    `unnormalize` clips to [-1, 1] first, so no model output maps outside the training range. NaN
    is passed through, not hidden: the safety stage downstream treats it as a fault.
    """

    def __init__(self, stats: NormStats, action_dim: int):
        if not isinstance(stats, NormStats):
            raise ValueError(f"stats must be NormStats, got {type(stats).__name__}")
        if action_dim < stats.dims:
            raise ValueError(f"action_dim {action_dim} is smaller than the {stats.dims} real action dims")
        self.stats = stats
        self.action_dim = int(action_dim)
        self.real_dims = stats.dims
        self._lo = stats.action_min
        self._span = stats.action_max - stats.action_min
        self._lo_t = torch.from_numpy(self._lo.copy())
        self._span_t = torch.from_numpy(self._span.copy())
        mask = np.zeros(self.action_dim, dtype=bool)
        mask[: self.real_dims] = True
        mask.flags.writeable = False
        self._mask = mask

    @property
    def mask(self) -> np.ndarray:
        """bool [action_dim]: True for real dims, False for padding (the loss ignores those)."""
        return self._mask

    def normalize(self, actions: ArrayT) -> ArrayT:
        """[..., real_dims] in robot units -> [..., action_dim]; the training range maps to [-1, 1]."""
        self._check(actions, self.real_dims, "actions")
        lo, span = self._consts(actions)
        real = (actions - lo) / span * 2 - 1
        pad = self.action_dim - self.real_dims
        if isinstance(real, torch.Tensor):
            return F.pad(real, (0, pad))
        return np.pad(real, [(0, 0)] * (real.ndim - 1) + [(0, pad)])

    def unnormalize(self, actions_norm: ArrayT) -> ArrayT:
        """[..., action_dim] model output -> [..., real_dims] in robot units, clipped to the range."""
        self._check(actions_norm, self.action_dim, "normalised actions")
        lo, span = self._consts(actions_norm)
        real = actions_norm[..., : self.real_dims]
        clipped = real.clamp(-1, 1) if isinstance(real, torch.Tensor) else np.clip(real, -1, 1)
        return (clipped + 1) / 2 * span + lo

    def _consts(self, like: ArrayT) -> tuple[ArrayT, ArrayT]:
        if isinstance(like, torch.Tensor):
            return (
                self._lo_t.to(dtype=like.dtype, device=like.device),
                self._span_t.to(dtype=like.dtype, device=like.device),
            )
        return self._lo.astype(like.dtype), self._span.astype(like.dtype)

    @staticmethod
    def _check(x: Any, last_dim: int, what: str) -> None:
        if isinstance(x, torch.Tensor):
            floating = x.is_floating_point()
        elif isinstance(x, np.ndarray):
            floating = np.issubdtype(x.dtype, np.floating)
        else:
            raise ValueError(f"{what} must be a numpy array or torch tensor, got {type(x).__name__}")
        if not floating:
            raise ValueError(f"{what} must have a floating dtype, got {x.dtype}")
        if x.ndim < 1 or x.shape[-1] != last_dim:
            raise ValueError(f"{what} must be [..., {last_dim}], got shape {tuple(x.shape)}")
