"""`modelport verify deploy.prototxt weights.caffemodel`: compare every blob of the converted net
with a reference and name the first divergent layer.

Exit status: 0 when every compared blob is within tolerance, 1 when not (ParityError),
2 for bad input (missing files, unknown reference, wrong input shapes...).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelport.errors import ConfigError

if TYPE_CHECKING:  # `modelport --help` imports this module: no numpy or torch at import time
    import numpy as np

    from modelport.backends.torch_module import CaffeNet


def _input_shapes(specs: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    from modelport.commands.convert import parse_input_shapes

    return parse_input_shapes(specs)


def _check_memory(net: CaffeNet) -> None:
    """Refuse before running when every blob, ours and the reference's (each top is kept for
    the comparison), plus the weights, would exceed the memory limit (`modelport.limits`)."""
    from modelport import limits

    tops = [(layer, top, net.blob_shapes[top]) for layer in net.source_layers
            for top in layer.tops]
    tops += [(layer, top, net.blob_shapes[top]) for layer, _ in net.run_order
             for top in layer.tops]
    weights = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    limits.check_blob_memory(tops, copies=2, command="verify",
                             why="ours and the reference's", held=weights)


def run(args: argparse.Namespace) -> int:
    """`modelport verify`: compare every blob with the reference; exit status 0 when all are within
    tolerance, 1 when not."""
    from rich.console import Console

    from modelport.atomic import write_text
    from modelport.backends.torch_module import build_module
    from modelport.pipeline import load_net
    from modelport.verify.compare import verify
    from modelport.verify.inputs import (
        describe_images,
        image_batch,
        npy_inputs,
        parse_ints,
        parse_mean,
    )
    from modelport.verify.references import resolve_reference
    from modelport.verify.tolerance import Tolerance

    if args.input and args.image:
        raise ConfigError("give --input or --image, not both")
    tolerance = Tolerance(args.tolerance)
    reference = resolve_reference(args.reference, args.prototxt, args.caffemodel)
    net_ir = load_net(args.prototxt, args.caffemodel, args.phase)
    shapes = _input_shapes(args.input_shape)
    declared = net_ir.input_shapes()
    input_names = [n for n in declared]
    inputs: dict[str, np.ndarray] | None = None
    sources: dict[str, str] = {}
    if args.input:
        inputs = npy_inputs(args.input, input_names)
        sources = {n: f"{spec}" for n, spec in zip(inputs, args.input)}
    elif args.image:
        if not input_names:
            raise ConfigError("the net declares no input blob to feed images to")
        name = input_names[0]
        if len(input_names) > 1:
            raise ConfigError(f"--image feeds '{name}' only; the net has other inputs "
                              f"({', '.join(input_names[1:])}). Fix: use --input NAME=FILE.npy")
        shape = shapes.get(name) or declared.get(name) or ()
        if len(shape) != 4:
            raise ConfigError(f"input '{name}' has no 4-D shape to preprocess images for. Fix: "
                              f"--input-shape {name}=1,3,H,W")
        options = {"preprocess": args.preprocess, "resize": args.resize, "mean": args.mean,
                   "scale": args.scale, "raw_scale": args.raw_scale,
                   "channel_swap": args.channel_swap}
        batch = image_batch(
            args.image, shape, style=args.preprocess,
            resize=parse_ints(args.resize, "--resize") if args.resize else None,
            mean=parse_mean(args.mean), scale=args.scale, raw_scale=args.raw_scale,
            channel_swap=parse_ints(args.channel_swap, "--channel-swap")
            if args.channel_swap else None)
        inputs = {name: batch}
        sources = {name: describe_images(args.image, options)}
    else:
        inputs = reference.fixed_inputs(input_names)
        if inputs is not None:
            sources = {n: "the reference's own input" for n in inputs}
    for name, value in (inputs or {}).items():
        shapes[name] = tuple(int(d) for d in value.shape)
    net = build_module(net_ir, shapes)
    _check_memory(net)
    report = verify(net, reference, inputs, tolerance=tolerance, seed=args.seed,
                    input_sources=sources)
    if args.json:
        write_text(args.json, report.to_json())
    if args.report:
        from modelport.verify.html import render_html

        write_text(args.report, render_html(report))
    if not args.quiet:
        from modelport.verify.render import render_table

        render_table(report, Console(width=max(Console().width, 160)))
    report.raise_for_failure()
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `modelport verify` and its options."""
    p = subparsers.add_parser(
        "verify", help="compare every blob with a reference (Caffe dump, OpenCV, pycaffe, ONNX)",
        description="Convert the model, run it and a reference on the same inputs, compare "
                    "every blob in network order and name the first divergent layer. Exit "
                    "status 0: all within tolerance; 1: not; 2: bad input.")
    p.add_argument("prototxt", help="deploy.prototxt")
    p.add_argument("caffemodel", help="weights.caffemodel")
    p.add_argument("--reference", "-r", metavar="R", default=None,
                   help="a directory of <blob>.npy dumps (tools/dump_caffe_blobs.py), 'opencv' "
                        "(default; cv2.dnn, OpenCV 4.x), 'pycaffe', 'onnxruntime' (modelport's "
                        "own ONNX export) or FILE.onnx")
    feed = p.add_argument_group("inputs (default: the dump's own inputs, else seeded random)")
    feed.add_argument("--input", "-i", action="append", metavar="[NAME=]FILE.npy",
                      help="an input batch (np.save'd, never unpickled); repeatable")
    feed.add_argument("--image", action="append", metavar="IMAGE",
                      help="an image file; repeat for a batch (fed to the first input)")
    feed.add_argument("--preprocess", choices=("caffe", "pycaffe"), default="caffe",
                      help="caffe: ImageData/Data pipeline (OpenCV, BGR 0-255; default); "
                           "pycaffe: caffe.io (RGB in [0,1], Transformer)")
    feed.add_argument("--resize", metavar="H,W",
                      help="resize images to H,W before the center crop to the input size "
                           "(default: the input size)")
    feed.add_argument("--mean", metavar="FILE|V,V,V",
                      help="mean to subtract: .binaryproto/.npy file or per-channel values")
    feed.add_argument("--scale", type=float, default=1.0,
                      help="multiply after mean subtraction (transform_param.scale)")
    feed.add_argument("--raw-scale", type=float, default=None,
                      help="pycaffe only: multiply [0,1] images before the mean (e.g. 255)")
    feed.add_argument("--channel-swap", metavar="2,1,0", help="reorder image channels")
    feed.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    feed.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                      help="input shape override (random inputs / images)")
    p.add_argument("--phase", choices=("test", "train"), default="test", help=argparse.SUPPRESS)
    p.add_argument("--tolerance", "-t", type=float, default=1e-4, metavar="T",
                   help="rel in max|diff| <= T * max(1, max|ref|) (default 1e-4)")
    p.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")
    p.add_argument("--json", metavar="FILE.json", help="write the report as JSON "
                   "(schema: modelport/verify/report.schema.json)")
    p.add_argument("--quiet", "-q", action="store_true", help="no table; only the exit status "
                   "and errors")
    p.set_defaults(func=run)
