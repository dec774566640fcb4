"""Benchmark training throughput: optimiser steps per second of the trainer's own step
(`dit4dit_policy.training.trainer.train_step`: loss, backward, clipping, AdamW) on random inputs
held on the device, so the figure is the model's cost without the data loader (whose samples/s
`bench/bench_data.py` measures). Under torchrun each process runs its share of the global batch
with DDP or FSDP, and the figures are per process (per GPU) and in total.

    python bench/bench_train.py --preset tiny --batch 8 --json out.json
    python bench/bench_train.py --preset g1 --device cuda --precision bf16 --batch 32 --gradient-checkpointing
    python -m torch.distributed.run --standalone --nproc_per_node 8 bench/bench_train.py --preset g1 \\
        --device cuda --precision bf16 --batch 256 --gradient-checkpointing --parallel fsdp
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from dit4dit_policy.model import TrainBatch, build_model, load_preset
from dit4dit_policy.training.config import TrainConfig
from dit4dit_policy.training.data import sample_seeds
from dit4dit_policy.training.distributed import Processes, Wrapped
from dit4dit_policy.training.optim import build_optimizer
from dit4dit_policy.training.trainer import train_step


def bench_config(args: argparse.Namespace) -> TrainConfig:
    """The g1 recipe's optimiser with this bench's size, device and precision."""
    return TrainConfig.from_dict(
        {
            "data": {"root": "unused", "num_workers": 0},
            "model": {"preset": args.preset, "cosmos_path": None, "latent_stats_samples": 0, "text": {}},
            "train": {
                "steps": args.warmup + args.steps,
                "batch_size": args.batch,
                "seed": 0,
                "device": args.device,
                "precision": args.precision,
                "parallel": args.parallel,
                "gradient_checkpointing": args.gradient_checkpointing,
            },
            "optimizer": {
                "lr_video": 1e-5,
                "lr_action": 1e-4,
                "lr_min": 5e-7,
                "warmup_steps": 0,
                "betas": [0.9, 0.95],
                "eps": 1e-8,
                "weight_decay": 1e-8,
                "grad_clip": 1.0,
            },
            "output": {"dir": "unused", "log_every": 1, "checkpoint_every": 1, "keep_checkpoints": 1},
            "validation": {"episodes": 0, "every": 0, "samples": 1},
        },
        source="bench",
    )


def random_batch(cfg, batch: int, device: torch.device) -> TrainBatch:
    o, a = cfg.observation, cfg.action
    g = torch.Generator(device=device).manual_seed(0)
    mask = torch.zeros(batch, a.horizon, a.dim, device=device)
    mask[..., : a.real_dim] = 1.0

    def uniform(*shape):
        return torch.rand(shape, generator=g, device=device) * 2 - 1

    # One instruction for the whole batch, materialised per sample as the trainer's DeviceText does.
    text = torch.randn((1, cfg.text.max_tokens, cfg.text.out_dim), generator=g, device=device)
    return TrainBatch(
        frames=uniform(batch, o.num_frames, 3, o.image_size, o.image_size),
        state=uniform(batch, cfg.state.dim),
        actions=uniform(batch, a.horizon, a.dim) * mask,
        action_mask=mask,
        text=text.expand(batch, -1, -1).contiguous(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=8, help="global batch (split over torchrun's processes)")
    parser.add_argument("--parallel", default="ddp", choices=["ddp", "fsdp"], help="with several processes")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = bench_config(args)
    model_cfg = load_preset(args.preset)
    procs = Processes.start(args.device)
    try:
        torch.manual_seed(0)
        model = build_model(model_cfg, device=procs.device).train()
        if args.gradient_checkpointing:
            model.video.transformer.enable_gradient_checkpointing()
        wrapped = Wrapped(model, procs, args.parallel)
        optimizer = build_optimizer(model, cfg.optimizer)
        params = [p for p in wrapped.module.parameters() if p.requires_grad]
        per_process = args.batch // procs.world
        batch = random_batch(model_cfg, per_process, procs.device)
        positions = range(procs.rank * per_process, (procs.rank + 1) * per_process)
        times = []
        for step in range(args.warmup + args.steps):
            start = time.perf_counter()
            values = train_step(
                wrapped, optimizer, batch, sample_seeds(0, step, positions), procs, params, cfg, model_cfg
            )
            values.tolist()  # waits for the device
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
        result = {
            "preset": args.preset,
            "parameters": model.param_counts(),
            "device": torch.cuda.get_device_name(procs.device)
            if procs.device.type == "cuda"
            else f"{platform.machine()} CPU, {os.cpu_count()} cores",
            "processes": procs.world,
            "parallel": args.parallel if procs.world > 1 else None,
            "precision": args.precision,
            "gradient_checkpointing": args.gradient_checkpointing,
            "global_batch": args.batch,
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "step_s_p50": statistics.median(times),
            "step_s_mean": statistics.fmean(times),
            "steps_per_s": 1.0 / statistics.fmean(times),
            "samples_per_s": args.batch / statistics.fmean(times),
            "samples_per_s_per_process": per_process / statistics.fmean(times),
            "peak_memory_gib": torch.cuda.max_memory_allocated(procs.device) / 2**30
            if procs.device.type == "cuda"
            else None,
        }
        if procs.is_main:
            report(result)
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
    finally:
        procs.close()


def report(result: dict) -> None:
    table = Table(title=f"training step, preset {result['preset']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    Console().print(table)


if __name__ == "__main__":
    main()
