"""Episode videos with PyAV: encoding a dataset's frames, probing and decoding any LeRobot video.

Encoded as H.264 (libx264) in yuv420p, the most widely decodable choice (LeRobot, browsers, GR00T
loaders). Quality is set high (CRF 18): a dataset frame differs from the camera frame the policy
node sees online by the codec's loss alone, and the preprocessing shrinks frames ~3-10x after
decoding, which hides most of what is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

CODEC = "libx264"
CODEC_NAME = "h264"  # how LeRobot's info.json names it
PIX_FMT = "yuv420p"
ENCODER_OPTIONS = {"crf": "18", "preset": "veryfast"}


class VideoError(ValueError):
    """A video cannot be written or read as the dataset needs."""


@dataclass(frozen=True)
class VideoInfo:
    frames: int  # 0 where the container does not record a count
    width: int
    height: int
    codec: str
    fps: float


def encode_video(path: Path, frames: Iterable[np.ndarray], fps: float) -> VideoInfo:
    """Write RGB frames (uint8 HxWx3, all one size, even width and height for yuv420p) as an mp4."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    count, shape = 0, None
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(CODEC, rate=rate, options=dict(ENCODER_OPTIONS))
        stream.pix_fmt = PIX_FMT
        for rgb in frames:
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise VideoError(f"{path}: frame {count} must be uint8 HxWx3 RGB, got {rgb.dtype} {rgb.shape}")
            if shape is None:
                shape = rgb.shape
                if shape[0] % 2 or shape[1] % 2:
                    raise VideoError(f"{path}: frames are {shape[1]}x{shape[0]}; {PIX_FMT} video needs even sizes")
                stream.width, stream.height = shape[1], shape[0]
            elif rgb.shape != shape:
                raise VideoError(
                    f"{path}: frame {count} is {rgb.shape[1]}x{rgb.shape[0]}, earlier ones {shape[1]}x{shape[0]}"
                )
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = count
            container.mux(stream.encode(frame))
            count += 1
        if count == 0:
            raise VideoError(f"{path}: no frames to encode")
        container.mux(stream.encode(None))
    return VideoInfo(frames=count, width=shape[1], height=shape[0], codec=CODEC_NAME, fps=float(rate))


def probe_video(path: Path) -> VideoInfo:
    """Read a video's header: frame count (0 if unrecorded), size, codec and rate."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.base_rate or 0
            return VideoInfo(
                frames=int(stream.frames),
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                codec=stream.codec_context.name,
                fps=float(rate),
            )
    except av.FFmpegError as e:
        raise VideoError(f"{path}: unreadable video: {e}") from e


def decode_video(path: Path, batch: int = 16) -> Iterator[np.ndarray]:
    """All frames of the first video stream as uint8 [n <= batch, H, W, 3] RGB batches, in order."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame and slice threads: decoding is the loader's main cost
            pending: list[np.ndarray] = []
            for frame in container.decode(stream):
                pending.append(frame.to_ndarray(format="rgb24"))
                if len(pending) == batch:
                    yield np.stack(pending)
                    pending = []
            if pending:
                yield np.stack(pending)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: cannot decode: {e}") from e
