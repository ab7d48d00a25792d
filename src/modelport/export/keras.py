"""`modelport.export.export_keras(net, outdir)` / `modelport export ... --keras OUTDIR`: a
converted Caffe net as a Keras 3 model that computes what Caffe computes.

OUTDIR gets `model_keras.py` (standalone Keras 3 source, see backends/keras/source.py),
`model.weights.h5` and `model.keras`. Before anything is written the generated model runs on
the Keras backend in use with the same inputs as the PyTorch module, and every blob that
survives as a named Keras layer output must match (backends/keras/selfcheck.py); after writing,
model_keras.py's own `load()` is run from the staging folder and its outputs checked again.
The three files are published all at once like `modelport convert`'s output folder
(modelport.convert.OutputFolder: a staging folder, then one rename).

Keras backend: whatever keras was imported with; when keras is not imported yet and
KERAS_BACKEND is unset, torch (modelport already has it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import ConfigError, FormatError
from modelport.optional import require

__all__ = ["KerasExportReport", "export_keras", "import_keras", "keras_view"]

PURPOSE = "the Keras export"


@dataclass
class KerasExportReport:
    """What export_keras wrote and how closely it reproduces the PyTorch module."""

    path: str
    backend: str
    files: list[str]
    outputs: list[str]
    max_diff: dict[str, float] = field(default_factory=dict)
    layer_diffs: dict[str, float] = field(default_factory=dict)
    checked: bool = True
    format: str = "keras"

    def summary(self) -> str:
        if not self.checked:
            return f"wrote {self.path} (Keras 3, {self.backend} backend; not checked)"
        worst_layer = max(self.layer_diffs.values(), default=0.0)
        worst_out = max(self.max_diff.values(), default=0.0)
        return (f"wrote {self.path} (Keras 3: {', '.join(self.files)}); checked on the "
                f"{self.backend} backend: {len(self.layer_diffs)} layer outputs max|diff| "
                f"{worst_layer:.3g}, {len(self.outputs)} output(s) after reload "
                f"max|diff| {worst_out:.3g}")


def import_keras() -> Any:
    """keras, on the backend it was imported with; torch when it is not imported yet and
    KERAS_BACKEND is unset."""
    if "keras" not in sys.modules and not os.environ.get("KERAS_BACKEND"):
        os.environ["KERAS_BACKEND"] = "torch"
    return require("keras", "keras", PURPOSE)


# ---------------------------------------------------------------------------------------------
# What to export


def keras_view(source: Any, weights: str | os.PathLike[str] | None = None, *,
               input_shapes: Mapping[str, Sequence[int]] | None = None, phase: str = "test",
               allow_missing_weights: bool = False) -> Any:
    """The NetView to export: a CaffeNet, an IR Net, a `modelport convert` folder, or a
    deploy.prototxt (with `weights`, a caffemodel)."""
    from modelport.backends.keras.view import view_of
    from modelport.backends.torch_module import CaffeNet, build_module
    from modelport.ir import Net

    if isinstance(source, CaffeNet):
        return view_of(source)
    if isinstance(source, Net):
        return view_of(build_module(source, input_shapes, allow_missing_weights))
    if not isinstance(source, str | os.PathLike):
        raise ConfigError(f"cannot export {type(source).__name__} to Keras. Fix: pass a "
                          "converted net, a conversion folder or a prototxt path")
    path = os.fspath(source)
    if os.path.isdir(path):
        if weights is not None or input_shapes:
            raise ConfigError("a conversion folder carries its own weights and input shapes. "
                              "Fix: drop the weights argument / --input-shape, or export "
                              "from the prototxt and caffemodel")
        return folder_view(path)
    from modelport.caffe import load

    module = load(path, weights, phase=phase, input_shapes=input_shapes or None,
                  allow_missing_weights=allow_missing_weights)
    return view_of(module)


def folder_view(folder: str) -> Any:
    """The NetView of a `modelport convert` folder: conversion.json's layers with the
    generated model.py's modules (its Conv2d / CaffePooling forms turned back into
    modelport's modules; every other module is a copy of modelport's own class)."""
    from modelport.backends.keras.view import NetView
    from modelport.convert import MODEL_FILE, REPORT_FILE, WEIGHTS_FILE, load_generated
    from modelport.export.common import check_conversion_folder, read_conversion_record
    from modelport.schema import caffe_pb2

    check_conversion_folder(folder)
    report = read_conversion_record(folder)
    try:
        entries = report["layers"]
        input_entries = report["inputs"]
        outputs = [o["name"] for o in report["outputs"]]
    except (KeyError, TypeError) as exc:
        raise FormatError(f"'{os.path.join(folder, REPORT_FILE)}' is not a readable "
                          f"conversion record ({exc})") from None
    if "optimized" in report:
        raise ConfigError(f"'{folder}' was converted with --optimize: its folded layers no "
                          "longer have their Caffe form. Fix: convert without --optimize, or "
                          "export --keras from the prototxt and caffemodel")
    net = load_generated(os.path.join(folder, MODEL_FILE)).load(
        os.path.join(folder, WEIGHTS_FILE))
    from modelport.ir import Layer

    sources, layers = [], []
    for e in entries:
        param = caffe_pb2.LayerParameter(name=e["name"], type=e["type"])
        layer = Layer(e["name"], e["type"], tuple(e["bottoms"]), tuple(e["tops"]), param)
        shapes = [tuple(int(d) for d in s) for s in e["top_shapes"]]
        if e.get("module") is None:
            sources.append((layer, shapes))
        else:
            layers.append((layer, _modelport_module(net._modules[e["module"]]), shapes))
    inputs = {i["name"]: tuple(int(d) for d in i["shape"]) for i in input_entries}
    return NetView(report.get("net") or "net",
                   report.get("sources", {}).get("prototxt", {}).get("file", folder),
                   sources, layers, list(inputs), outputs, inputs)


def _modelport_module(m: Any) -> Any:
    """A generated model.py module as modelport's own layer module where model.py writes
    another form (torch's ConvNd, its CaffePooling with the method as text); else `m`."""
    from torch import nn

    from modelport.layers.conv import CaffeConvolution
    from modelport.layers.pooling import CaffePooling
    from modelport.schema import caffe_pb2

    if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.ConvTranspose1d | nn.ConvTranspose2d
                  | nn.ConvTranspose3d):
        return CaffeConvolution(m.weight.detach(), None if m.bias is None else m.bias.detach(),
                                tuple(m.stride), tuple(m.padding),  # type: ignore[arg-type]
                                tuple(m.dilation), m.groups, 1,
                                isinstance(m, nn.modules.conv._ConvTransposeNd))
    name = type(m).__name__
    if name == "CaffeConvolution" and not isinstance(m, CaffeConvolution):
        return CaffeConvolution(m.weight.detach(), None if m.bias is None else m.bias.detach(),
                                m.stride, m.pad, m.dilation, m.group, m.axis, m.transposed)
    if name == "CaffePooling" and isinstance(m.method, str):
        method = caffe_pb2.PoolingParameter.PoolMethod.Value(m.method)
        return CaffePooling(method, m.kernel, m.stride, m.pad, m.ceil, m.with_mask)
    return m


# ---------------------------------------------------------------------------------------------
# The export


def _check_outdir(outdir: str) -> None:
    """OUTDIR must be a folder the export may own: not a file, not a conversion folder, no
    folder where the export writes one of its files."""
    from modelport.backends.keras.weights import KERAS_FILES
    from modelport.convert import MODEL_FILE, REPORT_FILE, WEIGHTS_FILE, check_output_folder

    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise ConfigError(f"--keras output '{outdir}' exists and is not a folder. Fix: give a "
                          "folder path")
    check_output_folder(outdir, option="--keras")
    held = [f for f in (MODEL_FILE, WEIGHTS_FILE, REPORT_FILE)
            if os.path.lexists(os.path.join(outdir, f))]
    if held:
        raise ConfigError(f"'{outdir}' holds a modelport conversion ({', '.join(held)}). Fix: "
                          "give the Keras export a folder of its own")
    for name in KERAS_FILES:
        path = os.path.join(outdir, name)
        if os.path.isdir(path):
            raise ConfigError(f"'{path}' is a folder, where the Keras export writes its {name}. "
                              "Fix: remove or rename it, or give another --keras folder")


def export_keras(net_or_convert_dir: Any, outdir: str | os.PathLike[str], *,
                 weights: str | os.PathLike[str] | None = None, check: bool = True,
                 inputs: Mapping[str, np.ndarray] | None = None, rel: float | None = None,
                 input_shapes: Mapping[str, Sequence[int]] | None = None, phase: str = "test",
                 allow_missing_weights: bool = False) -> KerasExportReport:
    """Export a converted net to Keras 3 in `outdir` (model_keras.py, model.weights.h5,
    model.keras), checked first (see the module docstring).

    Args:
        net_or_convert_dir: a CaffeNet (modelport.caffe.load), an IR Net, a `modelport
            convert` folder, or a deploy.prototxt path (with `weights`).
        outdir: the output folder (created; an earlier Keras export in it is replaced at
            once, other files are kept).
        weights: the caffemodel, with a prototxt.
        check: run the self-check (and the reload check) before publishing.
        inputs: input arrays in Caffe's layout (default: seeded normal data of the declared
            shapes).
        rel: the tolerance (default verify/tolerance.py's 1e-4).

    Raises:
        UnsupportedLayerError: layers without a faithful Keras form (all listed, named).
        ParityError: the Keras model differs from the PyTorch module (first divergent layer).
        ConfigError / FormatError: unusable inputs or output folder.
    """
    from modelport.verify.tolerance import DEFAULT_REL, Tolerance

    tolerance = Tolerance(DEFAULT_REL if rel is None else rel)
    out_shown = os.fspath(outdir)
    _check_outdir(out_shown)
    view = keras_view(net_or_convert_dir, weights, input_shapes=input_shapes, phase=phase,
                      allow_missing_weights=allow_missing_weights)
    from modelport.backends.keras.source import generate_keras_source

    generated = generate_keras_source(view)  # refuses unsupported layers before keras loads
    keras = import_keras()
    from modelport.backends.keras import selfcheck
    from modelport.backends.keras.view import check_inputs
    from modelport.backends.keras.weights import SOURCE_FILE, write_keras_files
    from modelport.convert import OutputFolder

    out = os.path.abspath(out_shown)
    namespace = selfcheck.exec_source(generated.source, os.path.join(out, SOURCE_FILE))
    model = selfcheck.build_model(namespace, generated)
    backend = keras.backend.backend()
    report = KerasExportReport(out_shown, backend, [], list(view.output_names), checked=check)
    arrays = check_inputs(view, inputs) if check else None
    if arrays is not None:
        report.layer_diffs = selfcheck.check_model(view, generated, model, arrays, tolerance
                                                   ).layer_diffs
    with OutputFolder(out, out_shown, option="--keras", wait_option=None) as folder:
        stage = folder.new_stage()
        try:
            names = write_keras_files(stage, generated.source, model)
        except OSError as exc:
            raise FormatError(f"cannot write the Keras export into '{out_shown}': "
                              f"{exc.strerror or exc}") from None
        if arrays is not None:
            reloaded = selfcheck.exec_source(generated.source, os.path.join(stage, SOURCE_FILE),
                                             "modelport_keras_reload").load()
            outs = selfcheck.run_outputs(
                reloaded, selfcheck.keras_inputs(generated, arrays, view.input_names))
            report.max_diff = selfcheck.compare_outputs(
                view, generated, outs, arrays, "Keras export (model_keras.py load())", tolerance)
        folder.publish(names)
    report.files = names
    return report


def export_keras_args(args: Any, inputs: Mapping[str, np.ndarray] | None,
                      input_shapes: Mapping[str, Sequence[int]] | None) -> KerasExportReport:
    """`modelport export SOURCE [WEIGHTS] --keras OUTDIR` with the command's options
    (--input arrays, --tolerance, --input-shape, --phase, --allow-missing-weights)."""
    refused = [flag for flag, given in (("--optimize", getattr(args, "optimize", False)),
                                        ("--outputs", getattr(args, "outputs", None)))
               if given]
    if refused:
        raise ConfigError(f"--keras exports the whole net as converted, so {' and '.join(refused)} "
                          "cannot apply to it. Fix: export --keras in a command of its own")
    return export_keras(args.source, args.keras, weights=args.weights, inputs=inputs,
                        rel=args.tolerance, input_shapes=input_shapes,
                        phase=args.phase, allow_missing_weights=args.allow_missing_weights)
