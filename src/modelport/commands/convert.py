"""`modelport convert deploy.prototxt weights.caffemodel -o out/`: write a PyTorch model folder."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from modelport.errors import ConfigError


def parse_input_shapes(specs: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    """`["data=1,3,227,227", ...]` -> {"data": (1, 3, 227, 227)}; ConfigError when malformed."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or ():
        name, sep, dims = spec.partition("=")
        name = name.strip()
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or any(d <= 0 for d in shape):
            raise ConfigError(f"--input-shape '{spec}' is not NAME=D1,D2,... with positive "
                              "integers. Fix: e.g. --input-shape data=1,3,227,227")
        shapes[name] = shape
    return shapes


def add_shape_options(parser: argparse.ArgumentParser) -> None:
    """The --input-shape and --phase options that convert, inspect and verify share."""
    parser.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                        help="shape of an input blob (repeatable); overrides the prototxt")
    parser.add_argument("--phase", choices=("test", "train"), default="test",
                        help="Caffe phase whose include/exclude rules apply (default: test)")


@contextlib.contextmanager
def read_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr for reading a big file (silent when not a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), console=console, transient=True,
                        disable=not console.is_terminal)
    with progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def parameter_summary(module: Any) -> str:
    """'70 parameters (every weight blob, ...: 52 learnable + 18 BatchNorm statistics)': the
    count `modelport inspect` gives (every Caffe weight blob, i.e. every value stored in
    model.safetensors), split into what training updates and BatchNorm's stored statistics
    (mean, variance, scale factor: state-dict buffers, not torch parameters)."""
    stored = sum(int(t.numel()) for t in module.state_dict().values())
    learnable = sum(int(p.numel()) for p in module.parameters())
    if stored == learnable:
        return f"{stored:,} parameters (every weight blob)"
    return (f"{stored:,} parameters (every weight blob, as inspect counts them: "
            f"{learnable:,} learnable + {stored - learnable:,} BatchNorm statistics)")


def run(args: argparse.Namespace) -> int:
    """`modelport convert`: write the conversion folder and print what was written; exit status
    0."""
    from rich.console import Console
    from rich.markup import escape

    from modelport.convert import check_output_folder, convert
    from modelport.layers.base import weights_shared_with_file

    check_output_folder(args.output)
    shapes = parse_input_shapes(args.input_shape)
    # The command only writes the module out: its weights may stay views of the mapped
    # caffemodel (no copy). Not with --optimize, which folds weights in place.
    share = contextlib.nullcontext() if args.optimize else weights_shared_with_file()
    with read_progress("reading weights") as progress, share:
        result = convert(args.prototxt, args.caffemodel, args.output, input_shapes=shapes,
                         phase=args.phase, mean=args.mean,
                         allow_missing_weights=args.allow_missing_weights,
                         optimize=args.optimize, progress=progress, wait=args.wait)
    console = Console()
    report = result.report
    inputs = ", ".join(f"{i['name']} {tuple(i['shape'])}" for i in report["inputs"])
    outputs = ", ".join(f"{o['name']} {tuple(o['shape'])}" for o in report["outputs"])
    console.print(f"[bold green]converted[/] {escape(report['net'] or args.prototxt)}: "
                  f"{len(report['layers'])} layers, {parameter_summary(result.module)}",
                  highlight=False, soft_wrap=True)
    console.print(f"  inputs  {escape(inputs)}\n  outputs {escape(outputs)}",  # not markup
                  highlight=False)
    if "optimized" in report:
        from modelport.optimize.inference import OptimizeReport

        console.print(f"  optimized: {OptimizeReport(**report['optimized']).summary()}")
    for name in sorted(result.files):
        console.print(f"  wrote   {result.files[name]}", highlight=False)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `modelport convert` and its options."""
    p = subparsers.add_parser(
        "convert", help="convert a Caffe model to a PyTorch folder (model.py + safetensors)",
        description="Convert deploy.prototxt + weights.caffemodel into OUT/: model.safetensors, "
                    "model.py (standalone PyTorch source), conversion.json and, with --mean, "
                    "mean.npy. Nothing is written unless the whole conversion succeeds, and the "
                    "files of an earlier conversion in OUT are replaced all at once.")
    p.add_argument("prototxt", help="net definition (.prototxt, V1 or V2)")
    p.add_argument("caffemodel", nargs="?", help="weights (.caffemodel)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    add_shape_options(p)
    p.add_argument("--mean", metavar="MEAN.binaryproto", help="mean file to save as mean.npy")
    p.add_argument("--allow-missing-weights", action="store_true",
                   help="initialise layers the caffemodel lacks with their Caffe fillers")
    p.add_argument("--optimize", action="store_true",
                   help="for inference: fold BatchNorm/Scale/Bias/Power into the preceding "
                        "convolution or inner product, fuse ReLU, drop Dropout/Silence (the "
                        "folded layers' blobs disappear)")
    p.add_argument("--wait", action="store_true",
                   help="when another convert is writing into OUT, wait for it to finish "
                        "instead of failing")
    p.set_defaults(func=run)
