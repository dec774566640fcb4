"""`dit4dit train` and `dit4dit plot`.

dit4dit train --config FILE [--resume]
dit4dit plot RUN_DIR [--out curves.png] [--force]

Several processes: python -m torch.distributed.run --nproc_per_node N -m dit4dit_policy.training train --config FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_train(args: argparse.Namespace) -> int:
    from dit4dit_policy.training.config import load_train_config
    from dit4dit_policy.training.trainer import train

    result = train(load_train_config(args.config), resume=args.resume)
    print(f"trained {result.step} steps; newest checkpoint {result.checkpoint}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from dit4dit_policy.training.plot import plot_run

    print(f"wrote {plot_run(args.run_dir, args.out, overwrite=args.force)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train DiT4DiT (one process, or one per GPU under torchrun)")
    p.add_argument("--config", type=Path, required=True, help="training config (a bare name: one in config/)")
    p.add_argument("--resume", action="store_true", help="continue the run in output.dir from its newest checkpoint")
    p.set_defaults(run=cmd_train)

    p = subparsers.add_parser("plot", help="draw a training run's loss and validation curves to PNG")
    p.add_argument("run_dir", type=Path, help="the run folder (output.dir of the training config)")
    p.add_argument("--out", type=Path, help="PNG to write (default: RUN_DIR/curves.png)")
    p.add_argument("--force", action="store_true", help="replace an existing PNG")
    p.set_defaults(run=cmd_plot)
