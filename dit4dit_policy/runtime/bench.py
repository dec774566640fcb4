"""Per-chunk latency of each backend on one checkpoint, with a stage breakdown and the period
error of a 50 Hz control loop ticking on another thread while inference runs.

Every backend gets the same inputs and noise; its actions are compared with the first backend's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from dit4dit_policy.model import ChunkNoise, build_model, load_preset, save_checkpoint
from dit4dit_policy.periodic import PeriodicThread
from dit4dit_policy.preprocessing import NormStats
from dit4dit_policy.runtime.artifacts import export_dir
from dit4dit_policy.runtime.export import export
from dit4dit_policy.runtime.runtime import BACKENDS, open_runtime

INSTRUCTION = "pick up the cup and put it on the plate"
CONTROL_PERIOD_S = 0.02  # 50 Hz, the upper end of manipulation policy rates


def random_checkpoint(preset: str, folder: Path, seed: int = 0) -> Path:
    """A checkpoint of `preset` with random weights and unit normalisation stats."""
    cfg = load_preset(preset)
    torch.manual_seed(seed)
    model = build_model(cfg)
    n = cfg.action.real_dim
    return save_checkpoint(model, NormStats(action_min=-np.ones(n), action_max=np.ones(n)), folder)


def parse_backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or not names:
        raise ValueError(f"unknown backend(s) {unknown or [text]}; known: {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def run_bench(
    checkpoint: Path, backends: list[str], *, runs: int, warmup: int, device: str = "cpu", precision: str = "fp32"
) -> dict:
    """Figures per backend: total_ms p50/p99, stage_ms_p50, control_period_error_ms p99/max,
    max_abs_diff (vs the first backend), plus the preset and thread count. A missing onnx or
    tensorrt export of the checkpoint is made first (an existing one is used, never replaced)."""
    for backend in ("onnx", "tensorrt"):
        if backend in backends and not export_dir(checkpoint, backend, precision).exists():
            export(checkpoint, backend, precision)
    results: dict[str, dict] = {}
    reference: list[np.ndarray] | None = None
    for backend in backends:
        runtime = open_runtime(backend, checkpoint, device=device, precision=precision)
        cfg = runtime.cfg
        g = torch.Generator().manual_seed(1)
        s = cfg.observation.image_size
        inputs = [
            (
                torch.rand(3, s, s, generator=g) * 2 - 1,
                np.random.default_rng(i).uniform(-1, 1, cfg.state.joints),
                _noise(ChunkNoise.draw(cfg, generator=g), runtime.device, runtime.dtype),
            )
            for i in range(warmup + runs)
        ]
        results[backend], actions = _time_backend(runtime, inputs, warmup)
        if reference is None:
            reference = actions
        results[backend]["max_abs_diff"] = max(
            float(np.abs(a - r).max()) for a, r in zip(actions, reference, strict=True)
        )
    return {
        "checkpoint": str(checkpoint),
        "preset": cfg.name,
        "device": device,
        "precision": precision,
        "runs": runs,
        "threads": torch.get_num_threads(),
        "compared_with": backends[0],
        "backends": results,
    }


def _noise(noise: ChunkNoise, device: torch.device, dtype: torch.dtype) -> ChunkNoise:
    # Drawn on the CPU in float32 for every backend, so that all of them get the very same noise.
    return ChunkNoise(video=noise.video.to(device, dtype), action=noise.action.to(device, dtype))


def _time_backend(runtime, inputs, warmup: int) -> tuple[dict, list[np.ndarray]]:
    control = PeriodicThread(CONTROL_PERIOD_S, lambda now: None, name="bench-control-50hz")
    totals, stages, outputs = [], {}, []
    for i, (frame, q, noise) in enumerate(inputs):
        if i == warmup:
            # Started after warm-up: compilation is not what a running robot sees.
            control.start()
        actions, seconds, per_stage = runtime.infer_timed(frame, q, INSTRUCTION, noise)
        outputs.append(actions)
        if i >= warmup:
            totals.append(seconds)
            for name, t in per_stage.items():
                stages.setdefault(name, []).append(t)
    control.stop()
    period = control.stats()

    def ms(xs: list[float], q: float) -> float:
        return float(np.percentile(np.asarray(xs) * 1e3, q))

    figures = {
        "total_ms": {"p50": ms(totals, 50), "p99": ms(totals, 99)},
        "stage_ms_p50": {name: ms(ts, 50) for name, ts in stages.items()},
        "control_period_error_ms": {"p99": period.p99 * 1e3, "max": period.max * 1e3, "missed": period.missed},
    }
    return figures, outputs[warmup:]


def report(result: dict, console: Console) -> None:
    backends = result["backends"]
    table = Table(
        title=f"Per chunk, ms: {result['preset']} preset, {result['device']} {result['precision']}, "
        f"{result['threads']} threads, {result['runs']} runs"
    )
    table.add_column("stage")
    for name in backends:
        table.add_column(f"{name} p50", justify="right")
    stages = dict.fromkeys(s for b in backends.values() for s in b["stage_ms_p50"])
    for stage in stages:
        table.add_row(stage, *(f"{b['stage_ms_p50'].get(stage, float('nan')):.2f}" for b in backends.values()))
    for q in ("p50", "p99"):
        table.add_row(f"[bold]total {q}", *(f"[bold]{b['total_ms'][q]:.2f}" for b in backends.values()))
    table.add_row(
        "50 Hz loop period error p99", *(f"{b['control_period_error_ms']['p99']:.3f}" for b in backends.values())
    )
    table.add_row(
        f"max |actions - {result['compared_with']}|", *(f"{b['max_abs_diff']:.1e}" for b in backends.values())
    )
    console.print(table)
