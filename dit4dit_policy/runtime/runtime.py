"""One interface over every backend: `open_runtime(backend, checkpoint)` -> `Runtime`.

Every backend is `FastInference` - the same preprocessing, normalisation, text-context cache,
first-frame VAE encode, K/V projection and Euler loop - with its two export boundaries
(`trunk`: VideoTrunk, `denoiser`: ActionDenoiser) replaced by the backend's executable of them.
What is not inside the two graphs runs in torch on every backend: it is either cached per
instruction (text context), run once per chunk and cheap (VAE first frame, K/V, state token), or
numpy-side (normalisation). Parity is therefore a property of the two graphs alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from dit4dit_policy.model import ChunkNoise, FastInference, StageTimes, load_checkpoint
from dit4dit_policy.model.text import TextEncoder, build_text_encoder
from dit4dit_policy.runtime.artifacts import export_dir, load_matching_manifest

BACKENDS = ("torch", "torch-compiled", "onnx", "tensorrt")
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Runtime:
    """A checkpoint served by one backend. `infer` as `FastInference.infer`: frame [3, S, S] RGB in
    [-1, 1], joint angles [state.joints] -> float32 actions [H, action.real_dim] in robot units."""

    def __init__(self, backend: str, inference: FastInference):
        self.backend = backend
        self.inference = inference

    @property
    def cfg(self):
        return self.inference.cfg

    @property
    def device(self) -> torch.device:
        return self.inference.device

    @property
    def dtype(self) -> torch.dtype:
        return self.inference.dtype

    def infer(
        self, frame: torch.Tensor, joint_positions: np.ndarray, instruction: str, noise: ChunkNoise | None = None
    ) -> np.ndarray:
        return self.inference.infer(frame, joint_positions, instruction, noise=noise)

    def infer_timed(
        self, frame: torch.Tensor, joint_positions: np.ndarray, instruction: str, noise: ChunkNoise | None = None
    ) -> tuple[np.ndarray, float, dict[str, float]]:
        """`infer` plus its wall time and per-stage seconds (each stage synchronised on CUDA, which
        costs a little: the total is measured around the whole call)."""
        self.inference.times = StageTimes(enabled=True)
        try:
            start = time.perf_counter()
            actions = self.infer(frame, joint_positions, instruction, noise)
            seconds = time.perf_counter() - start
            return actions, seconds, dict(self.inference.times.seconds)
        finally:
            self.inference.times = StageTimes()


def open_runtime(
    backend: str,
    checkpoint: str | Path,
    *,
    text_encoder: TextEncoder | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> Runtime:
    """Serve `checkpoint` with `backend` (one of BACKENDS). `text_encoder` defaults to the one the
    checkpoint's preset describes. onnx and tensorrt read `checkpoint/export/<backend>-<precision>/`
    (made by `dit4dit export`) and refuse an export of other weights, another config or precision, or
    with a graph file changed since."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if precision not in TORCH_DTYPES:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(TORCH_DTYPES)}")
    device = torch.device(device)
    manifest = None
    if backend in ("onnx", "tensorrt"):
        folder = export_dir(checkpoint, backend, precision)
        manifest = load_matching_manifest(folder, checkpoint, backend, precision)
    model, stats = load_checkpoint(checkpoint, device=device)
    model = model.to(TORCH_DTYPES[precision])
    if text_encoder is None:
        text_encoder = build_text_encoder(model.cfg.text.encoder_config())
    batch = manifest.batch_size if manifest is not None else 1
    inference = FastInference(model, stats, text_encoder, batch_size=batch)
    if backend == "torch-compiled":
        compile_boundaries(inference)
    elif backend == "onnx":
        from dit4dit_policy.runtime.onnx_backend import OrtGraph

        inference.trunk = OrtGraph(folder, manifest.graphs["trunk"], device)
        inference.denoiser = OrtGraph(folder, manifest.graphs["denoiser"], device)
    elif backend == "tensorrt":
        from dit4dit_policy.runtime.tensorrt_backend import TrtGraph

        inference.trunk = TrtGraph(folder, manifest.graphs["trunk"], device)
        inference.denoiser = TrtGraph(folder, manifest.graphs["denoiser"], device)
    return Runtime(backend, inference)


def compile_boundaries(inference: FastInference) -> None:
    """torch.compile the trunk and the denoiser with static shapes; on CUDA with CUDA graphs
    (mode="reduce-overhead"), which removes the per-kernel launch cost that dominates the small
    action DiT. Compilation happens on the first query."""
    cuda = inference.device.type == "cuda"
    mode = "reduce-overhead" if cuda else "default"
    trunk = torch.compile(inference.trunk.eval(), mode=mode, fullgraph=True, dynamic=False)
    denoiser = torch.compile(inference.denoiser.eval(), mode=mode, fullgraph=True, dynamic=False)
    if cuda:
        trunk, denoiser = _StepMarked(trunk), _StepMarked(denoiser)
    inference.trunk, inference.denoiser = trunk, denoiser


class _StepMarked:
    """Marks a new CUDA-graph step before each call: the graphs' output memory is then reused by
    the next replay, which is safe because FastInference consumes each output (tokens -> K/V,
    velocity -> the action buffer) before the next call."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return self.fn(*args)
