"""`modelport train solver.prototxt [--weights W.caffemodel] [--resume S.solverstate]`:
train or fine-tune with Caffe's solver semantics (what `caffe train` does), on PyTorch.

Under `torchrun --nproc_per_node=N modelport train ...` every process trains on its shard of
the data and gradients are averaged, as Caffe's multi-GPU solvers do (modelport.train.distributed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


class _ConsoleHandler(logging.Handler):
    """Log lines through a rich console (so they print above the progress bar)."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.console.print(self.format(record), markup=False, highlight=False)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from modelport.errors import ConfigError
    from modelport.train.distributed import (
        init_process_group,
        make_distributed,
        shutdown_process_group,
    )
    from modelport.train.reporting import LOG, Reporter
    from modelport.train.solver import Solver

    if args.weights and args.resume:
        raise ConfigError("give --resume (continue a snapshot) or --weights (fine-tune), not "
                          "both. Fix: drop one of them, as `caffe train` requires")
    rank, world = init_process_group(args.device)
    console = Console(stderr=True)
    handler: logging.Handler
    show_bar = (not args.no_progress and console.is_terminal and rank == 0 and not args.quiet)
    handler = _ConsoleHandler(console) if show_bar else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.WARNING if args.quiet or rank != 0 else logging.INFO)
    LOG.propagate = False
    reporter = Reporter(progress=show_bar, metrics_csv=args.metrics if rank == 0 else None,
                        tensorboard_dir=args.tensorboard if rank == 0 else None,
                        console=console)
    try:
        solver = Solver(args.solver, workdir=args.workdir, weights=args.weights,
                        device=args.device, max_iter=args.max_iter, reporter=reporter,
                        rank=rank, world=world)
        if args.metrics is None and rank == 0:
            reporter.open_csv(solver.snapshot_prefix() + "_metrics.csv")
        make_distributed(solver)
        if world > 1 and rank == 0:
            LOG.info("Data-parallel training on %d processes: each reads its own shard, "
                     "gradients are averaged (Caffe's multi-GPU semantics)", world)
        solver.solve(resume=args.resume)
        shutdown_process_group(wait=True)
    finally:
        reporter.close()
        LOG.removeHandler(handler)
        shutdown_process_group(wait=False)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train / fine-tune with Caffe's solver semantics",
        description="Train the net of SOLVER (a Caffe solver.prototxt) exactly as `caffe train` "
                    "would: same update rules, lr policy, iter_size, clipping, test nets, "
                    "snapshots (.caffemodel + .solverstate, plus .safetensors). Relative paths "
                    "are resolved against --workdir (default: the current directory, like "
                    "Caffe), falling back to the solver file's folder.")
    p.add_argument("solver", help="solver definition (solver.prototxt)")
    p.add_argument("--weights", metavar="W.caffemodel",
                   help="initialise from these weights (fine-tuning; comma-separated for "
                        "several files)")
    p.add_argument("--resume", metavar="S.solverstate",
                   help="continue from a snapshot (Caffe's or modelport's)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--max-iter", type=int, metavar="N", help="override the solver's max_iter")
    p.add_argument("--workdir", metavar="DIR",
                   help="the directory Caffe would run in (default: current directory)")
    p.add_argument("--metrics", metavar="CSV",
                   help="metrics CSV (default: <snapshot_prefix>_metrics.csv)")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard scalars (needs the tensorboard package)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="only warnings and errors")
    p.set_defaults(func=run)
