"""`dit4dit convert` and `dit4dit dataset-info`.

dit4dit convert RECORDINGS DATASET [--rate HZ] [--camera TOPIC] [--params policy.yaml] [--force]
                [--include-failed] [--xr-fps FPS]
dit4dit dataset-info DATASET [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any


def cmd_convert(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dit4dit_policy.data.convert import ConversionSpec, convert, detect_source

    spec = ConversionSpec.from_policy_params(args.params, rate=args.rate, camera=args.camera)
    if detect_source(args.recordings) == "xr" and args.camera is None:
        spec = dataclasses.replace(spec, camera=None)  # XR cameras have names, not topics: the first
    console = Console(soft_wrap=True)  # paths stay on one line, whatever the terminal's width
    console.print(
        f"converting {args.recordings} -> {args.dataset} at {spec.rate:g} Hz: state {len(spec.state_joints)} "
        f"joints, action {len(spec.action_joints)} joints, camera {spec.camera or '(the only one)'}"
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("episodes", total=None)

        def on_episode(done: int, total: int, name: str) -> None:
            progress.update(bar, completed=done, total=total, description=name)

        report = convert(
            args.recordings,
            args.dataset,
            spec,
            force=args.force,
            include_failed=args.include_failed,
            xr_fps=args.xr_fps,
            on_episode=on_episode,
        )
    for name, reason in report.skipped:
        console.print(f"[yellow]skipped {name}: {reason}[/yellow]")
    console.print(
        f"wrote {args.dataset}: {len(report.episodes)} episodes, {report.frames} frames "
        f"({report.frames / spec.rate:.1f} s) from {report.source_format} recordings"
    )
    return 0


def dataset_summary(root: Path) -> dict[str, Any]:
    """What a dataset holds, after checking every episode's table and video header (the checks
    `open_training_dataset` makes, without decoding video)."""
    from dit4dit_policy.data.lerobot import action_range, dataset_layout, read_episode, read_meta

    meta = read_meta(root)
    layout = dataset_layout(meta)
    lengths = [len(read_episode(meta, layout, e)) for e in sorted(meta.episodes)]
    video = meta.info["features"].get(layout.video_key, {})
    lo, hi = action_range(meta, layout)
    return {
        "root": str(root),
        "codebase_version": meta.info["codebase_version"],
        "gr00t_modality": meta.modality is not None,
        "fps": meta.fps,
        "episodes": len(lengths),
        "frames": sum(lengths),
        "seconds": sum(lengths) / meta.fps,
        "episode_frames": {"min": min(lengths), "max": max(lengths)},
        "tasks": [meta.tasks[i] for i in sorted(meta.tasks)],
        "state_dim": layout.state_dim,
        "state_names": meta.info["features"].get("observation.state", {}).get("names"),
        "action_dim": layout.action_dim,
        "action_names": meta.info["features"].get("action", {}).get("names"),
        "action_min": lo.tolist(),
        "action_max": hi.tolist(),
        "videos": meta.video_keys,
        "camera": layout.video_key,
        "camera_shape": video.get("shape"),
        "conversion": meta.conversion,
    }


def cmd_dataset_info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    summary = dataset_summary(args.dataset)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    table = Table(title=f"{args.dataset} (LeRobot {summary['codebase_version']})", show_header=False)
    lengths, tasks, names = summary["episode_frames"], summary["tasks"], summary["state_names"]
    action_names = summary["action_names"] or [f"dim {i}" for i in range(summary["action_dim"])]
    ranges = zip(action_names, summary["action_min"], summary["action_max"], strict=True)
    rows = [
        ("episodes", f"{summary['episodes']} ({lengths['min']}..{lengths['max']} frames each)"),
        ("frames", f"{summary['frames']} at {summary['fps']:g} Hz ({summary['seconds']:.1f} s)"),
        ("tasks", "\n".join(tasks[:10]) + (f"\n... {len(tasks)} in all" if len(tasks) > 10 else "")),
        ("state", f"{summary['state_dim']} dims" + (f": {', '.join(names)}" if names else "")),
        ("action", f"{summary['action_dim']} dims"),
        ("action range", "\n".join(f"{name}: {lo:+.4f} .. {hi:+.4f}" for name, lo, hi in ranges)),
        ("camera", f"{summary['camera']} {summary['camera_shape']} (videos: {', '.join(summary['videos'])})"),
        ("GR00T modality.json", "yes" if summary["gr00t_modality"] else "no"),
    ]
    conversion = summary["conversion"]
    if conversion:
        source = f"{conversion['source']} ({conversion['source_format']}, camera {conversion['camera']})"
        rows.append(("converted from", source))
        if conversion["skipped"]:
            rows.append(("skipped", "\n".join(f"{s['source']}: {s['reason']}" for s in conversion["skipped"])))
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
    print(f"checked: all {summary['episodes']} episodes readable, finite, lengths consistent with their videos")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("convert", help="recorded episodes (recorder bags or XR folders) -> LeRobot dataset")
    p.add_argument("recordings", type=Path, help="folder of episode_* folders")
    p.add_argument("dataset", type=Path, help="dataset folder to write")
    p.add_argument("--rate", type=float, help="rows per second (default: 1 / action_period of --params)")
    p.add_argument(
        "--camera", help="camera topic (bags) or name (XR); default: the image topic of --params, the first XR camera"
    )
    p.add_argument(
        "--params", default="policy.yaml", help="policy node parameters: joints, slop, camera (default: config/'s)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing dataset")
    p.add_argument("--include-failed", action="store_true", help="also convert episodes not marked successful")
    p.add_argument("--xr-fps", type=float, help="recording rate of XR episodes whose data.json does not state it")
    p.set_defaults(run=cmd_convert)

    p = subparsers.add_parser("dataset-info", help="check a dataset and summarise it")
    p.add_argument("dataset", type=Path)
    p.add_argument("--json", type=Path, help="also write the summary here")
    p.set_defaults(run=cmd_dataset_info)
