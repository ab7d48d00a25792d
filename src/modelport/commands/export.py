"""`modelport export`: a converted net (a `modelport convert` folder, or deploy.prototxt +
weights.caffemodel) to ONNX, TorchScript and/or a torch.export program, each checked against the
PyTorch module on the same inputs before it is written."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from modelport.errors import ConfigError
from modelport.export.targets import export_targets

if TYPE_CHECKING:  # `modelport --help` imports this module: numpy only when exporting
    import numpy as np


def load_source(source: str, weights: str | None, input_shapes: dict[str, tuple[int, ...]],
                phase: str, allow_missing_weights: bool) -> Any:
    """The module to export: a conversion folder's generated `Net` (model.py + safetensors), or
    the live CaffeNet converted from a prototxt (+ caffemodel)."""
    if os.path.isdir(source):
        from modelport.convert import MODEL_FILE, WEIGHTS_FILE, load_generated
        from modelport.export.common import check_conversion_folder, read_conversion_record

        check_conversion_folder(source)
        if weights or input_shapes:
            raise ConfigError("a conversion folder carries its own weights and input shapes. "
                              "Fix: drop the weights argument / --input-shape, or export from "
                              "the prototxt and caffemodel")
        read_conversion_record(source)  # a readable conversion.json is part of a complete folder
        generated = load_generated(os.path.join(source, MODEL_FILE))
        return generated.load(os.path.join(source, WEIGHTS_FILE))
    from modelport.caffe import load

    return load(source, weights, phase=phase, input_shapes=input_shapes or None,
                allow_missing_weights=allow_missing_weights)


def optimize_source(module: Any, source: str) -> Any:
    """`--optimize`: fold the live CaffeNet; a conversion folder must already be optimised
    (`modelport convert --optimize`), since its generated model.py has no Caffe graph to fold."""
    from modelport.backends.torch_module import CaffeNet
    from modelport.optimize.inference import optimize_for_inference

    if isinstance(module, CaffeNet):
        return optimize_for_inference(module)
    from modelport.export.common import read_conversion_record

    if "optimized" not in read_conversion_record(source):
        raise ConfigError(f"'{source}' was converted without --optimize, and its generated "
                          "model.py cannot be folded afterwards. Fix: re-run `modelport convert "
                          f"... --optimize -o {source}`, or export --optimize from the prototxt "
                          "and caffemodel")
    return module  # already folded at conversion


def read_inputs(specs: list[str] | None) -> dict[str, np.ndarray] | None:
    """`--input NAME=FILE.npy` (repeatable) -> arrays, never unpickling."""
    if not specs:
        return None
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--input '{spec}' is not NAME=FILE.npy. Fix: e.g. "
                              "--input data=batch.npy")
        import numpy as np

        from modelport.formats.caffe.files import check_file

        try:
            out[name] = np.load(check_file(path, "input array"), allow_pickle=False)
        except ValueError as exc:
            raise ConfigError(f"--input {name}: '{path}' is not a plain .npy array ({exc})") \
                from None
    return out


def run(args: argparse.Namespace) -> int:
    """`modelport export`: write and check every target the arguments ask for."""
    from rich.console import Console
    from rich.markup import escape

    from modelport.commands.convert import parse_input_shapes

    keras_dir = getattr(args, "keras", None)
    tf_files = getattr(args, "saved_model", None) or getattr(args, "tflite", None)
    if not keras_dir and not tf_files and not any(getattr(args, t.dest, None)
                                                  for t in export_targets()):
        flags = [f"{t.flag} FILE" for t in export_targets()] + [
            "--keras OUTDIR", "--saved-model DIR", "--tflite FILE"]
        raise ConfigError(f"nothing to export. Fix: give {', '.join(flags[:-1])} and/or "
                          f"{flags[-1]}")
    inputs = read_inputs(args.input)
    reports = []
    if any(getattr(args, t.dest, None) for t in export_targets()):
        module = load_source(args.source, args.weights, parse_input_shapes(args.input_shape),
                             args.phase, args.allow_missing_weights)
        if args.optimize:
            module = optimize_source(module, args.source)
        outputs = [o for o in (args.outputs or "").split(",") if o] or None
        reports = export_all(module, args, inputs, outputs)
    if keras_dir:  # a folder target, published after the file targets were written
        from modelport.export.keras import export_keras_args

        reports.append(export_keras_args(args, inputs, parse_input_shapes(args.input_shape)))
    if tf_files:  # TensorFlow files, checked in a TensorFlow child process (export/keras_tf)
        from modelport.export.keras_tf import export_tensorflow_args

        reports.extend(export_tensorflow_args(args, inputs,
                                              parse_input_shapes(args.input_shape)))
    console = Console(soft_wrap=True)
    for report in reports:
        console.print(f"[bold green]exported[/] {escape(report.summary())}", highlight=False)
    return 0


def export_all(module: Any, args: argparse.Namespace, inputs: dict[str, np.ndarray] | None,
               outputs: list[str] | None) -> list[Any]:
    """Build and check every requested file, then write them all: each destination gets a
    temporary file before any work starts, and the files are renamed into place only when
    every export has passed its check (a failure in the last one leaves none written)."""
    from modelport.export.common import staged_files

    targets = [(t, getattr(args, t.dest)) for t in export_targets()
               if getattr(args, t.dest, None)]
    reports = []
    with staged_files([path for _, path in targets]) as temps:
        for (target, path), tmp in zip(targets, temps):
            data, report = target.build(module, args, inputs, outputs)
            with open(tmp, "wb") as fh:
                fh.write(data)
            report.path = path
            reports.append(report)
    return reports


# modelport.export.onnx.DEFAULT_OPSET (that module imports torch, and `modelport --help` must
# not): tests/test_startup.py checks the two agree.
DEFAULT_OPSET = 18


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` subcommand to `subparsers`."""
    p = subparsers.add_parser(
        "export", help="export to ONNX / TorchScript / torch.export, checked before writing",
        description="Export a converted net to ONNX (standard operators only), TorchScript "
                    "and/or a torch.export program. Each file is run on the same inputs as the "
                    "PyTorch module (ONNX Runtime for ONNX) and written only if it matches.")
    p.add_argument("source", help="a `modelport convert` output folder, or deploy.prototxt")
    p.add_argument("weights", nargs="?", help="weights.caffemodel (with a prototxt)")
    for target in export_targets():
        p.add_argument(target.flag, metavar=target.metavar, help=target.help)
    p.add_argument("--keras", metavar="OUTDIR",
                   help="write a Keras 3 model into OUTDIR (model_keras.py, model.weights.h5, "
                        "model.keras), every named layer output checked first")
    p.add_argument("--saved-model", metavar="DIR",
                   help="write a TensorFlow SavedModel folder (Keras 3's export, on the "
                        "TensorFlow backend), checked against the PyTorch module; needs "
                        "tensorflow")
    p.add_argument("--tflite", metavar="FILE",
                   help="write a TensorFlow Lite file (converted from that SavedModel), "
                        "checked against the PyTorch module; needs tensorflow")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default {DEFAULT_OPSET}; below 18 uses torch's "
                        "TorchScript-based exporter)")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="make only the batch axis symbolic (checked at two batch sizes)")
    p.add_argument("--optimize", action="store_true",
                   help="fold BatchNorm/Scale into convolutions, fuse ReLU, drop Dropout first "
                        "(a conversion folder must come from `convert --optimize`)")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                   help="input data for tracing and checking (default: random, declared shape)")
    p.add_argument("--outputs", metavar="BLOB,BLOB", help="blobs to export (default: outputs)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="allowed max|diff| relative to max(1, max|ref|) (default 1e-4)")
    p.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                   help="shape of an input blob (prototxt input only; repeatable)")
    p.add_argument("--phase", choices=("test", "train"), default="test",
                   help="Caffe phase whose include/exclude rules apply (default: test)")
    p.add_argument("--allow-missing-weights", action="store_true",
                   help="initialise layers the caffemodel lacks with their Caffe fillers")
    p.set_defaults(func=run)
