r"""`modelport tf port` and `modelport tf verify`: TF / Keras weights into a PyTorch twin
module, and its parity against TensorFlow's outputs (`modelport.tf`).

    modelport tf port model.keras --twin twin.py:Twin --sample-shape 1,3,224,224 \
        --out twin.safetensors
    modelport tf verify --twin twin.py:Twin --weights twin.safetensors \
        --input x.npy --reference tf_out.npy

`--twin FILE.py:Class` runs FILE.py (your own module definition) and builds `Class()`. `port`
prints the report (every variable, its parameter, rule and layout) and writes the state dict
as safetensors; a strict problem is one error line, exit 2, nothing written. `verify` prints
verify's table; exit 0 when every compared output is within tolerance, 1 when not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from modelport.errors import ConfigError

__all__ = ["add_port_parsers"]


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} {text!r}: give comma-separated integers") from None


def load_twin(spec: str) -> Any:
    """`FILE.py:Class` -> Class() (FILE.py is run: it is the user's module definition)."""
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise ConfigError(f"--twin {spec!r}: give FILE.py:Class")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--twin: no such file '{file}'")
    module_spec = importlib.util.spec_from_file_location(f"_modelport_twin_{file.stem}", file)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"--twin: '{file}' is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        cls = getattr(module, name, None)
        twin = cls() if cls is not None else None
    except Exception as exc:  # the user's own code: its error in one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"--twin {spec}: building {name}() failed ({type(exc).__name__}: "
                          f"{first})") from None
    if twin is None:
        raise ConfigError(f"--twin: '{file}' defines no {name}")
    return twin


def _port_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("porting")
    g.add_argument("--map", action="append", metavar="REGEX=REPLACEMENT", default=[],
                   help="an explicit rename rule (re.sub on the variable's name), tried first; "
                        "repeatable, applied in order")
    g.add_argument("--sample-shape", metavar="N,C,H,W",
                   help="trace the twin on zeros of this NCHW shape (finds the Dense after a "
                        "Flatten, whose rows are re-ordered from NHWC)")
    g.add_argument("--flatten-shape", action="append", metavar="LINEAR=H,W,C", default=[],
                   help="the NHWC map an nn.Linear (module path or Keras layer name) reads; "
                        "'none' for no re-order anywhere")
    g.add_argument("--set-eps", action="store_true",
                   help="set each BatchNorm's eps to the source's epsilon")
    g.add_argument("--allow-eps-mismatch", action="store_true",
                   help="keep a BatchNorm eps that differs from the source's (reported)")
    g.add_argument("--bn-eps", type=float, metavar="E",
                   help="the epsilon of a checkpoint that stores none (TF-slim: 0.001)")
    g.add_argument("--flip-kernels", action="store_true",
                   help="flip conv kernels spatially (Theano-style true convolution)")
    g.add_argument("--no-strict", action="store_true",
                   help="port what fits and report the rest instead of failing")
    g.add_argument("--no-check-settings", action="store_true",
                   help="skip the check that each twin's strides, dilation, groups, padding, "
                   "output_padding and BatchNorm axis match the Keras layer config (for a twin "
                   "that computes the same another way)")


def _port(args: argparse.Namespace, twin: Any, quiet: bool = False) -> Any:
    import torch

    from modelport.tf import port_weights

    rules = []
    for rule in args.map:
        pattern, sep, repl = rule.partition("=")
        if not sep:
            raise ConfigError(f"--map {rule!r}: give REGEX=REPLACEMENT")
        rules.append((pattern, repl))
    flatten: dict[str, tuple[int, ...]] | None = None
    for item in args.flatten_shape:
        flatten = flatten if flatten is not None else {}
        if item.lower() == "none":
            continue
        name, sep, dims = item.partition("=")
        if not sep:
            raise ConfigError(f"--flatten-shape {item!r}: give LINEAR=H,W,C or none")
        flatten[name] = _ints(dims, "--flatten-shape")
    sample = torch.zeros(_ints(args.sample_shape, "--sample-shape")) if args.sample_shape \
        else None
    report = port_weights(args.source, twin, rules, strict=not args.no_strict,
                          flip_kernels=args.flip_kernels, set_eps=args.set_eps,
                          allow_eps_mismatch=args.allow_eps_mismatch, bn_eps=args.bn_eps,
                          flatten_shapes=flatten, sample_input=sample,
                          check_settings=not args.no_check_settings)
    if not quiet:
        print(report)
    return report


def run_port(args: argparse.Namespace) -> int:
    from modelport.weights_file import write_safetensors

    twin = load_twin(args.twin)
    report = _port(args, twin)
    if args.json:
        from modelport.atomic import write_text

        write_text(args.json, json.dumps(report.to_dict(), indent=1) + "\n")
    if args.out:
        state = {k: v.detach().contiguous() for k, v in twin.state_dict().items()}
        # eps is no tensor: kept in the metadata so `tf verify --weights` restores a set_eps
        eps = {p: float(m.eps) for p, m in twin.named_modules()
               if isinstance(getattr(m, "eps", None), float)}
        write_safetensors(args.out, state, metadata={"modelport.source": str(args.source),
                                                     "modelport.eps": json.dumps(eps)})
        print(f"wrote {args.out} ({len(state)} tensors)")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from modelport.tf.verify_tf import verify_tf
    from modelport.verify.render import render_table

    twin = load_twin(args.twin)
    if (args.weights is None) == (args.source is None):
        raise ConfigError("give the twin's weights: --weights FILE.safetensors (from tf port) "
                          "or --source the TF / Keras file to port first")
    if args.weights is not None:
        from modelport.weights_file import read_safetensors

        tensors, meta = read_safetensors(args.weights)
        missing, unexpected = twin.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise ConfigError(f"{args.weights} does not fit the twin: missing "
                              f"{', '.join(missing) or 'none'}, unexpected "
                              f"{', '.join(unexpected) or 'none'}")
        modules = dict(twin.named_modules())
        for path, eps in json.loads(meta.get("modelport.eps", "{}")).items():
            if path in modules:
                modules[path].eps = float(eps)  # what tf port --set-eps set
    names = None
    if args.source is not None:
        names = _port(args, twin, quiet=True)  # its layer -> module map names the references
    report = verify_tf(twin, args.input, args.reference, tolerance=args.tolerance,
                       layout=args.layout, names=names)
    if args.json or args.report:
        from modelport.atomic import write_text

        if args.json:
            write_text(args.json, report.to_json())
        if args.report:
            from modelport.verify.html import render_html

            write_text(args.report, render_html(report))
    from rich.console import Console

    console = Console()
    render_table(report, console if console.is_terminal else Console(width=200))
    return 0 if report.passed else 1


def add_port_parsers(tf_sub: Any) -> None:
    """`port` and `verify` under `modelport tf`."""
    port = tf_sub.add_parser("port", help="port TF / Keras weights into a PyTorch twin module",
                             description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    port.add_argument("source", help=".keras, Keras .h5 / .weights.h5, or a TF checkpoint")
    port.add_argument("--twin", required=True, metavar="FILE.py:Class",
                      help="the PyTorch module mirroring the Keras model (FILE.py is run)")
    port.add_argument("--out", metavar="FILE.safetensors", help="write the ported state dict")
    port.add_argument("--json", metavar="FILE.json", help="write the port report as JSON")
    _port_options(port)
    port.set_defaults(func=run_port)

    ver = tf_sub.add_parser("verify", help="compare a ported twin with TF's .npy outputs",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ver.add_argument("--twin", required=True, metavar="FILE.py:Class")
    ver.add_argument("--weights", metavar="FILE.safetensors", help="the twin's ported weights")
    ver.add_argument("--source", metavar="TF_FILE", help="or port this file first")
    ver.add_argument("--input", "-i", action="append", required=True, metavar="FILE.npy",
                     help="an input (NHWC unless --layout nchw); repeat for several inputs")
    ver.add_argument("--reference", "-r", required=True, metavar="FILE.npy|DIR",
                     help="TF's output .npy, or a folder of output.npy and <module>.npy")
    ver.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc",
                     help="layout of the .npy inputs and references (default nhwc: TF's)")
    ver.add_argument("--tolerance", "-t", type=float, default=1e-4, metavar="T",
                     help="rel in max|diff| <= T * max(1, max|ref|) (default 1e-4)")
    ver.add_argument("--json", metavar="FILE.json", help="write verify's JSON report")
    ver.add_argument("--report", metavar="FILE.html", help="write verify's HTML report")
    _port_options(ver)
    ver.set_defaults(func=run_verify)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run as: modelport tf port|verify ...")
