"""Reference path vs fast path, per action chunk, on a preset with random weights.

    python bench/bench_model.py --preset small [--device cpu|cuda] [--dtype fp32|bf16] [--json out.json]
                                [--runs N] [--warmup N] [--threads N]

Both paths get the same weights and the same noise on every run; their outputs are compared.
Timing: p50/p99 over --runs chunks after --warmup, the paths interleaved run by run so that they
share the machine's conditions; a per-stage breakdown (text, VAE, video DiT, action K/V, each
denoising step). Then the FLOPs of every part for the g1 preset.

The text encoder is a hash encoder of the preset's dimensions for every preset: the bench times
the model. (The reference path runs it on every call, as the release runs Cosmos-Reason1; the fast
path on an instruction change only, so the real 7B encoder would widen the gap.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from dit4dit_policy.model import (
    ChunkNoise,
    FastInference,
    ReferenceInference,
    StageTimes,
    build_model,
    flop_report,
    load_preset,
)
from dit4dit_policy.model.text import HashTextEncoder
from dit4dit_policy.preprocessing import NormStats

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}  # max |difference| of normalised actions
INSTRUCTION = "pick up the cup and put it on the plate"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own choice)")
    p.add_argument("--json", type=Path, help="write the figures here")
    return p.parse_args()


def build(preset: str, device: str, dtype: torch.dtype):
    cfg = load_preset(preset)
    torch.manual_seed(0)
    model = build_model(cfg, device=device).to(dtype)
    stats = NormStats(action_min=-np.ones(cfg.action.real_dim), action_max=np.ones(cfg.action.real_dim))
    encoder = HashTextEncoder(cfg.text.out_dim, cfg.text.max_tokens)
    return cfg, ReferenceInference(model, stats, encoder), FastInference(model, stats, encoder)


def timed_chunk(path, frame, state, noise, device: torch.device) -> tuple[float, dict[str, float], torch.Tensor]:
    path.times = StageTimes(enabled=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    actions = path.sample(frame, state, INSTRUCTION, noise)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, dict(path.times.seconds), actions


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    cfg, ref, fast = build(args.preset, args.device, dtype)
    s = cfg.observation.image_size
    g = torch.Generator(device=device).manual_seed(1)
    totals: dict[str, list[float]] = {"reference": [], "fast": []}
    stages: dict[str, dict[str, list[float]]] = {"reference": {}, "fast": {}}
    max_diff = 0.0
    for i in range(args.warmup + args.runs):
        frame = torch.rand(1, 3, s, s, generator=g, device=device, dtype=dtype) * 2 - 1
        state = torch.rand(1, cfg.state.dim, generator=g, device=device, dtype=dtype) * 2 - 1
        noise = ChunkNoise.draw(cfg, 1, generator=g, device=device, dtype=dtype)
        outputs = {}
        for name, path in (("reference", ref), ("fast", fast)):
            seconds, per_stage, outputs[name] = timed_chunk(path, frame, state, noise, device)
            if i >= args.warmup:
                totals[name].append(seconds)
                for stage, t in per_stage.items():
                    stages[name].setdefault(stage, []).append(t)
        max_diff = max(max_diff, (outputs["fast"].float() - outputs["reference"].float()).abs().max().item())

    def pct(xs: list[float], q: float) -> float:
        return float(np.percentile(np.array(xs) * 1e3, q))

    return {
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "runs": args.runs,
        "threads": torch.get_num_threads(),
        "params": ref.model.param_counts(),
        "total_ms": {k: {"p50": pct(v, 50), "p99": pct(v, 99)} for k, v in totals.items()},
        "stage_ms_p50": {k: {st: pct(v, 50) for st, v in d.items()} for k, d in stages.items()},
        "speedup_p50": pct(totals["reference"], 50) / pct(totals["fast"], 50),
        "max_abs_diff": max_diff,
        "tolerance": TOLERANCE[args.dtype],
        "outputs_equal": max_diff <= TOLERANCE[args.dtype],
        "g1_gflops": {k: v / 1e9 for k, v in flop_report(load_preset("g1")).parts.items()},
    }


def report(result: dict, console: Console) -> None:
    title = f"{result['preset']} preset, {result['device']} {result['dtype']}, {result['threads']} threads"
    table = Table(title=f"Per chunk, ms ({title}, {result['runs']} runs)")
    table.add_column("stage")
    table.add_column("reference p50", justify="right")
    table.add_column("fast p50", justify="right")
    ref, fast = result["stage_ms_p50"]["reference"], result["stage_ms_p50"]["fast"]
    for stage in dict.fromkeys([*ref, *fast]):
        cells = [f"{d[stage]:.2f}" if stage in d else "-" for d in (ref, fast)]
        table.add_row(stage, *cells)
    for q in ("p50", "p99"):
        table.add_row(f"[bold]total {q}", *(f"[bold]{result['total_ms'][k][q]:.2f}" for k in ("reference", "fast")))
    console.print(table)
    verdict = "[green]equal[/]" if result["outputs_equal"] else "[red]DIFFERENT[/]"
    console.print(
        f"speedup (p50): [bold]{result['speedup_p50']:.2f}x[/]; outputs {verdict} "
        f"(max |diff| {result['max_abs_diff']:.2e}, tolerance {result['tolerance']:.0e})"
    )
    console.print(f"parameters: {result['params']}")
    flops = Table(title="g1 preset: GFLOP per part (one chunk, batch 1)")
    flops.add_column("part")
    flops.add_column("GFLOP", justify="right")
    for part, gflop in result["g1_gflops"].items():
        flops.add_row(part, f"{gflop:,.2f}")
    console.print(flops)


def main() -> None:
    args = parse_args()
    result = run(args)
    report(result, Console())
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
