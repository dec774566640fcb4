"""Benchmark the data pipeline: converting recordings into a dataset, and feeding training from it.

Writes synthetic recorder episodes (raw 640x480 bgr8 camera at 30 Hz with sensor-like noise,
joint states at 100 Hz, teleop commands at 50 Hz), converts them with `dit4dit_policy.data.convert`
(the `dit4dit convert` path) and opens the result with `open_training_dataset` for a model preset.
Reports conversion speed, the time to open (decode + preprocess every frame once), and samples per
second by random access and through a DataLoader with 0 and 2 workers.

    python bench/bench_data.py [--preset tiny] [--episodes 4] [--seconds 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from dit4dit_policy.data.convert import ConversionSpec, convert
from dit4dit_policy.data.dataset import open_training_dataset
from dit4dit_policy.data.synthetic import SyntheticEpisode, write_bag_episode
from dit4dit_policy.model.config import load_preset


def _folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _loader_rate(dataset: torch.utils.data.Dataset, batch: int, workers: int, batches: int) -> float:
    """Samples per second through a shuffling DataLoader, after its first batch (worker start-up)."""
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=(batches + 1) * batch)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    count = sum(len(b["text"]) for b in it)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each episode")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--samples", type=int, default=3000, help="samples timed per access pattern")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a DataLoader worker runs; the other core is the encoder's/worker's
    cfg = load_preset(args.preset)
    work = Path(tempfile.mkdtemp(prefix="bench_data_"))
    console = Console()
    try:
        spec = SyntheticEpisode(duration=args.seconds, width=args.width, height=args.height, noise=3)
        start = time.perf_counter()
        for i in range(args.episodes):
            write_bag_episode(work / "rec" / f"episode_{i:06d}", spec)
        console.print(f"wrote {args.episodes} synthetic episodes in {time.perf_counter() - start:.1f} s")

        conversion = ConversionSpec.from_policy_params()
        start = time.perf_counter()
        report = convert(work / "rec", work / "ds", conversion)
        convert_s = time.perf_counter() - start
        recorded_s = args.episodes * args.seconds
        camera_frames = args.episodes * (int(args.seconds * spec.camera_rate) + 1)

        start = time.perf_counter()
        dataset = open_training_dataset(work / "ds", cfg)
        open_s = time.perf_counter() - start

        rng = np.random.default_rng(0)
        indices = rng.integers(0, len(dataset), args.samples)
        start = time.perf_counter()
        for i in indices:
            dataset[int(i)]
        random_rate = args.samples / (time.perf_counter() - start)
        batches = max(args.samples // args.batch, 1)
        loader_rates = {w: _loader_rate(dataset, args.batch, w, batches) for w in (0, 2)}

        figures = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "torch": torch.__version__,
            "preset": args.preset,
            "recording": {
                "episodes": args.episodes,
                "seconds_each": args.seconds,
                "camera": f"{args.width}x{args.height} bgr8 raw, 30 Hz",
                "bag_bytes": _folder_bytes(work / "rec"),
            },
            "conversion": {
                "seconds": round(convert_s, 2),
                "recorded_seconds_per_second": round(recorded_s / convert_s, 2),
                "camera_frames_read_per_second": round(camera_frames / convert_s, 1),
                "rows_per_second": round(report.frames / convert_s, 1),
                "rows": report.frames,
                "dataset_bytes": _folder_bytes(work / "ds"),
            },
            "open": {
                "seconds": round(open_s, 2),
                "rows_decoded_per_second": round(report.frames / open_s, 1),
                "frame_cache_bytes": report.frames * 3 * cfg.observation.image_size**2,
            },
            "samples_per_second": {
                "random_access": round(random_rate, 1),
                **{f"dataloader_batch{args.batch}_workers{w}": round(r, 1) for w, r in loader_rates.items()},
            },
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = Table(title=f"data pipeline ({args.preset} preset, {args.episodes} x {args.seconds:g} s episodes)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    c, o, s = figures["conversion"], figures["open"], figures["samples_per_second"]
    table.add_row("conversion", f"{c['seconds']} s ({c['recorded_seconds_per_second']} x real time)")
    table.add_row("camera frames read / s", str(c["camera_frames_read_per_second"]))
    table.add_row(
        "bag -> dataset size", f"{figures['recording']['bag_bytes'] / 1e6:.0f} MB -> {c['dataset_bytes'] / 1e6:.1f} MB"
    )
    table.add_row("open (decode + preprocess)", f"{o['seconds']} s ({o['rows_decoded_per_second']} rows/s)")
    for name, rate in s.items():
        table.add_row(f"samples/s, {name}", str(rate))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
