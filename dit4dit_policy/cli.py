"""`dit4dit`: command-line entry point, one small function per subcommand.

dit4dit export --checkpoint DIR --format onnx|tensorrt [--precision fp32|fp16|bf16] [--force]
dit4dit bench [--checkpoint DIR | --preset NAME] [--backend torch,onnx] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from dit4dit_policy.runtime.artifacts import FORMATS, PRECISIONS

# Subcommands that live beside the code they drive: each module has `register(subparsers)`, which
# adds its parsers (with `run` set) and imports nothing heavy until a command runs.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "dit4dit_policy.data.cli",
    "dit4dit_policy.training.cli",
    "dit4dit_policy.evaluation.cli",
    "dit4dit_policy.sim_session",
)


def cmd_export(args: argparse.Namespace) -> int:
    from dit4dit_policy.runtime import export

    folder = export(args.checkpoint, args.format, args.precision, force=args.force)
    print(f"wrote {folder}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from dit4dit_policy.runtime.bench import parse_backends, random_checkpoint, report, run_bench

    backends = parse_backends(args.backend)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="dit4dit-bench-") as tmp:
        checkpoint = args.checkpoint or random_checkpoint(args.preset, Path(tmp) / "checkpoint")
        result = run_bench(
            checkpoint, backends, runs=args.runs, warmup=args.warmup, device=args.device, precision=args.precision
        )
    report(result, Console())
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dit4dit", description="DiT4DiT policy tools")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a checkpoint to ONNX graphs or TensorRT engines beside it")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--precision", choices=PRECISIONS, help="default: fp32 for onnx, bf16 for tensorrt")
    p.add_argument("--force", action="store_true", help="replace an existing export")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("bench", help="per-chunk latency of inference backends")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, help="default: random weights of --preset in a temp folder")
    source.add_argument("--preset", default="small")
    p.add_argument("--backend", default="torch,onnx", help="comma-separated: torch, torch-compiled, onnx, tensorrt")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="CPU threads for torch and onnxruntime (default: torch's choice)")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.set_defaults(run=cmd_bench)

    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as e:
        print(f"dit4dit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
