"""`modelport train solver.prototxt [--weights W.caffemodel] [--resume S.solverstate]`:
train or fine-tune with Caffe's solver semantics (what `caffe train` does), on PyTorch.

`caffe train`'s own flags are accepted too (tools/caffe.cpp, gflags syntax: one or two dashes,
`-flag value` or `-flag=value`): `-solver S`, `-weights W`, `-snapshot X.solverstate` (=
--resume), `-gpu N|N,M|all` and `-iterations N` (which `caffe train` ignores: only `caffe
test`/`time` use it). As in caffe.cpp, without `-gpu` a solver's explicit `solver_mode: GPU`
asks for GPU `device_id`; modelport then trains on CUDA when torch has it, and otherwise says
once in the log that it trains on the CPU. The log is glog's format (see
modelport.train.reporting.GlogFormatter), so Caffe's log parsers read it.

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
        # soft_wrap: no newlines inserted into long lines (each stays one glog line)
        self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)


def _is_net_prototxt(path: str) -> int:
    """How many layers `path` has when it parses as a NetParameter (0: it is not a net)."""
    from modelport.errors import ModelportError
    from modelport.formats.caffe import caffe_pb2
    from modelport.formats.caffe.prototxt import read_net_text

    try:
        msg = read_net_text(path).message
    except (ModelportError, RecursionError, ValueError):  # only a hint: the solver error stands
        return 0
    assert isinstance(msg, caffe_pb2.NetParameter)
    return len(msg.layer) + len(msg.layers)


def read_solver_param(path: str) -> Any:
    """The SolverParameter of `path`; a net prototxt given instead gets its own error."""
    from modelport.errors import ConfigError, FormatError
    from modelport.formats.caffe.prototxt import read_solver_text

    try:
        return read_solver_text(path)
    except FormatError:
        layers = _is_net_prototxt(path)
        if not layers:
            raise
        raise ConfigError(
            f"'{path}' is a net prototxt ({layers} layer{'s' if layers != 1 else ''}), not a "
            f"solver. Fix: pass the solver prototxt that names this net (net: \"{path}\", "
            "base_lr, max_iter, ...), e.g. lenet_solver.prototxt for lenet_train_test.prototxt"
            ) from None


def _gpu_ids(flag: str) -> list[int] | None:
    """caffe.cpp get_gpus: '-gpu all' (None: every visible device) or 'N[,M...]'."""
    from modelport.errors import ConfigError

    if flag.strip() == "all":
        return None
    try:
        ids = [int(v) for v in flag.split(",") if v.strip()]
    except ValueError:
        ids = [-1]
    if not ids or min(ids) < 0:
        raise ConfigError(f"-gpu '{flag}' is not a device list. Fix: give -gpu N, -gpu N,M "
                          "or -gpu all, as caffe train takes")
    return ids


def choose_device(args: argparse.Namespace, solver_param: Any) -> tuple[str, list[str]]:
    """The torch device to train on, and the log lines that say why (caffe.cpp train():
    `-gpu`, else an explicit `solver_mode: GPU` with `device_id`, else the CPU). A GPU asked
    for where torch has no CUDA runs on the CPU, said once in the log (a warning line)."""
    import os

    import torch

    from modelport.errors import ConfigError
    from modelport.formats.caffe import caffe_pb2

    if args.device is not None:
        if args.gpu is not None:
            raise ConfigError("give --device or -gpu, not both. Fix: drop one of them")
        return args.device, []
    why = ""
    ids: list[int] | None = []
    if args.gpu is not None:
        ids, why = _gpu_ids(args.gpu), f"-gpu {args.gpu}"
    elif (solver_param.HasField("solver_mode")
          and solver_param.solver_mode == caffe_pb2.SolverParameter.GPU):
        ids = [int(solver_param.device_id)]
        why = f"solver_mode: GPU (device_id {ids[0]})"
    if ids == []:
        return "cpu", ["Use CPU."]
    if not torch.cuda.is_available():
        return "cpu", [f"W:{why} asks for a GPU, but CUDA is not available to this PyTorch "
                       "(build or machine): training on the CPU", "Use CPU."]
    count = torch.cuda.device_count()
    gpus = list(range(count)) if ids is None else ids
    if max(gpus) >= count:
        raise ConfigError(f"{why}: GPU {max(gpus)} does not exist ({count} visible). Fix: "
                          f"give a device id below {count}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if len(gpus) > 1 and world != len(gpus):
        raise ConfigError(f"{why} asks for {len(gpus)} GPUs; modelport runs one process per "
                          f"GPU. Fix: torchrun --standalone --nproc_per_node={len(gpus)} -m "
                          f"modelport train ... -gpu {args.gpu or ','.join(map(str, gpus))}")
    gpu = gpus[int(os.environ.get("LOCAL_RANK", "0"))] if len(gpus) > 1 else gpus[0]
    lines = ["Using GPUs " + ", ".join(map(str, gpus))]
    lines += [f"GPU {g}: {torch.cuda.get_device_name(g)}" for g in gpus]
    return f"cuda:{gpu}", lines


def run(args: argparse.Namespace) -> int:
    """`modelport train`: run the solver as `caffe train` would; exit status 0."""
    from rich.console import Console

    from modelport.errors import ConfigError
    from modelport.train.distributed import (
        init_process_group,
        make_distributed,
        shutdown_process_group,
    )
    from modelport.train.reporting import LOG, GlogFormatter, Reporter
    from modelport.train.solver import Solver

    if args.solver_flag is not None:
        if args.solver is not None and args.solver != args.solver_flag:
            raise ConfigError(f"two solvers given ('{args.solver}' and -solver "
                              f"'{args.solver_flag}'). Fix: give one")
        args.solver = args.solver_flag
    if args.solver is None:
        raise ConfigError("need a solver definition to train. Fix: modelport train "
                          "solver.prototxt (or -solver solver.prototxt, as caffe train)")
    if args.weights and args.resume and args.resume != "auto":  # auto: weights if no snapshot
        raise ConfigError("give --resume (continue a snapshot) or --weights (fine-tune), not "
                          "both. Fix: drop one of them, as `caffe train` requires")
    solver_param = read_solver_param(args.solver)
    args.device, device_lines = choose_device(args, solver_param)
    rank, world = init_process_group(args.device)
    console = Console(stderr=True)
    handler: logging.Handler
    show_bar = (not args.no_progress and console.is_terminal and rank == 0 and not args.quiet)
    handler = _ConsoleHandler(console) if show_bar else logging.StreamHandler(sys.stderr)
    handler.setFormatter(GlogFormatter())
    LOG.addHandler(handler)
    LOG.setLevel(logging.WARNING if args.quiet or rank != 0 else logging.INFO)
    LOG.propagate = False
    # Python warnings become glog W lines too: a line without the prefix after the first
    # iteration makes parse_log.py stop.
    logging.captureWarnings(True)
    py_warnings = logging.getLogger("py.warnings")
    py_warnings.addHandler(handler)
    warnings_propagate, py_warnings.propagate = py_warnings.propagate, False
    reporter = Reporter(progress=show_bar, metrics_csv=args.metrics if rank == 0 else None,
                        tensorboard_dir=args.tensorboard if rank == 0 else None,
                        console=console)
    try:
        for line in device_lines if rank == 0 else []:  # said once, by rank 0
            if line.startswith("W:"):
                reporter.message(line[2:], level=logging.WARNING)
            else:
                reporter.message(line)
        if args.iterations is not None:
            reporter.message("-iterations %d is ignored, as caffe train ignores it (only caffe "
                             "test and time use it); max_iter comes from the solver or "
                             "--max-iter", args.iterations, level=logging.WARNING)
        if args.caffe_rng and str(args.device).startswith("cuda"):
            reporter.message("--caffe-rng replays Caffe's CPU-mode random streams; a Caffe "
                             "run in GPU mode drew its Dropout masks from cuRAND, which is not "
                             "replayed", level=logging.WARNING)
        solver = Solver(args.solver, workdir=args.workdir, weights=args.weights,
                        device=args.device, max_iter=args.max_iter, reporter=reporter,
                        rank=rank, world=world, rng="caffe" if args.caffe_rng else "torch",
                        resuming=bool(args.resume) and args.resume != "auto")
        if args.metrics is None and rank == 0:
            reporter.open_csv(solver.snapshot_prefix() + "_metrics.csv")
        make_distributed(solver)
        if world > 1 and rank == 0:
            LOG.info("Data-parallel training on %d processes: each reads its own shard, "
                     "gradients are averaged (Caffe's multi-GPU semantics)", world)
        if args.resume and args.resume != "auto":
            reporter.message("Resuming from %s", args.resume)
        reporter.message("Starting Optimization")
        solver.solve(resume=args.resume)
        reporter.message("Optimization Done.", source="caffe.cpp:250")
        shutdown_process_group(wait=True)
    finally:
        reporter.close()
        LOG.removeHandler(handler)
        py_warnings.removeHandler(handler)
        py_warnings.propagate = warnings_propagate
        logging.captureWarnings(False)
        shutdown_process_group(wait=False)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `modelport train` and its options (including caffe.cpp's single-dash flags)."""
    p = subparsers.add_parser(
        "train", help="train / fine-tune with Caffe's solver semantics",
        description="Train the net of SOLVER (a Caffe solver.prototxt) exactly as `caffe train` "
                    "would: same update rules, lr policy, iter_size, clipping, test nets, "
                    "snapshots (.caffemodel + .solverstate, plus .safetensors). Relative paths "
                    "are resolved against --workdir (default: the current directory, like "
                    "Caffe), falling back to the solver file's folder.")
    p.add_argument("solver", nargs="?", help="solver definition (solver.prototxt)")
    p.add_argument("-solver", "--solver", dest="solver_flag", metavar="S",
                   help="the solver, as caffe train takes it (instead of the positional one)")
    p.add_argument("--weights", "-weights", dest="weights", metavar="W.caffemodel",
                   help="initialise from these weights (fine-tuning; comma-separated for "
                        "several files); replaces the solver's own `weights` entries, as "
                        "caffe train does (-snapshot clears them)")
    p.add_argument("--resume", "-snapshot", "--snapshot", dest="resume",
                   metavar="S.solverstate",
                   help="continue from a snapshot (Caffe's or modelport's; caffe train's "
                        "-snapshot); `auto`: from the latest complete snapshot set of the "
                        "solver's snapshot_prefix if there is one (else from --weights or "
                        "the fillers)")
    p.add_argument("--device", default=None,
                   help="torch device (default: cpu, or what -gpu / solver_mode: GPU ask for)")
    p.add_argument("-gpu", "--gpu", dest="gpu", metavar="N",
                   help="caffe train's -gpu N (or N,M under torchrun, or all): train on CUDA "
                        "device N when torch has CUDA, else on the CPU (said in the log)")
    p.add_argument("-iterations", "--iterations", dest="iterations", type=int, metavar="N",
                   help="accepted for caffe train's command lines and ignored, as caffe "
                        "train ignores it (use --max-iter)")
    p.add_argument("--max-iter", type=int, metavar="N", help="override the solver's max_iter")
    p.add_argument("--workdir", metavar="DIR",
                   help="the directory Caffe would run in (default: current directory)")
    p.add_argument("--metrics", metavar="CSV",
                   help="metrics CSV (default: <snapshot_prefix>_metrics.csv)")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard scalars (needs the tensorboard package)")
    p.add_argument("--caffe-rng", action="store_true",
                   help="draw every random number (fillers, Dropout masks, crops, mirrors, "
                        "shuffles) from Caffe's own streams in Caffe's order, replaying a "
                        "Caffe CPU run with the same random_seed step for step")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="only warnings and errors")
    p.set_defaults(func=run)
