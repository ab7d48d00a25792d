"""model_keras.py: a converted net as readable, standalone Keras 3 source.

The file imports only keras and numpy (no TensorFlow-, JAX- or torch-specific call), so it
runs on every Keras backend. `build()` writes one line per Caffe layer, the Keras layer named
after the Caffe layer (`/` written as `__`, `.` and NUL as `_`: Keras, its torch backend and
HDF5 refuse them), and returns the model without weights; `load(weights=None)` builds it and
reads model.weights.h5 beside the file. The custom layers of backends/keras/runtime*.py a net
needs are copied in, decorators included. Every user string (layer, blob, net names) is a
`repr()` literal or a `doc_text` comment: nothing from a prototxt runs as code.
"""

from __future__ import annotations

import ast
import functools
import pathlib
import textwrap
from dataclasses import dataclass

import numpy as np

from modelport.backends.codegen import doc_text
from modelport.backends.keras.registry import (
    CAFFE,
    CHANNELS_LAST,
    EmitContext,
    KerasEmitted,
    KerasTensor,
    KerasUnsupportedError,
    NameAllocator,
    find_emitter,
    lit,
)
from modelport.backends.keras.view import NetView
from modelport.ir import Layer

__all__ = ["GeneratedKeras", "LayerRecord", "generate_keras_source", "WEIGHTS_FILE"]

WEIGHTS_FILE = "model.weights.h5"

# Names build() and the module use; layer variables never take them (they start with t_).
_RESERVED = ("keras", "np", "os", "build", "load", "model")


@dataclass
class LayerRecord:
    """One converted layer in the generated model: its Keras layer name (None: no named layer
    produces its tops), the Keras tensors of its tops and its weights."""

    layer: Layer
    keras_name: str | None
    tops: list[KerasTensor]
    weights: list[np.ndarray]


@dataclass
class GeneratedKeras:
    """The text of model_keras.py and what the exporter needs to fill and check the model."""

    source: str
    records: list[LayerRecord]
    inputs: list[KerasTensor]
    outputs: list[KerasTensor]


def missing_emitters(view: NetView) -> list[tuple[str, str, str]]:
    """Every layer without a Keras emitter for its form, as (name, type, reason)."""
    problems = []
    for layer, module, _ in view.layers:
        if find_emitter(layer, module) is None:
            problems.append((layer.name, layer.type,
                             f"no Keras emitter is registered for this form of {layer.type} "
                             f"({type(module).__name__}; Fix: register one with "
                             "@register_keras in modelport.backends.keras.registry)"))
    return problems


def generate_keras_source(view: NetView, version: str | None = None) -> GeneratedKeras:
    """model_keras.py for `view`; a KerasUnsupportedError (an UnsupportedLayerError) listing
    every layer without a Keras emitter, or without a faithful Keras form (nothing is
    approximated)."""
    from modelport import __version__

    problems = missing_emitters(view)
    if problems:
        raise KerasUnsupportedError(problems, view.source)
    names = NameAllocator(_RESERVED)
    blobs: dict[str, KerasTensor] = {}
    body: list[str] = []
    runtime: list[str] = []
    records: list[LayerRecord] = []

    def run(layer: Layer, module: object, top_shapes: list[tuple[int, ...]],
            keras_name: str) -> KerasEmitted:
        emitter = find_emitter(layer, module)
        assert emitter is not None  # missing_emitters() checked every layer
        ctx = EmitContext(layer, module, [blobs[b] for b in layer.bottoms], top_shapes,
                          keras_name, names.ident(layer.name), names, view.source)
        emitted = emitter(ctx)
        if len(emitted.tops) != len(layer.tops):
            raise AssertionError(f"the Keras emitter of {layer.type} gave {len(emitted.tops)} "
                                 f"tops for {len(layer.tops)}")  # an emitter bug
        if emitted.lines:
            emitted.lines[-1] += f"  # {doc_text(layer.type)}"
        body.extend(emitted.lines)
        runtime.extend(emitted.runtime)
        for top, t in zip(layer.tops, emitted.tops):
            blobs[top] = t
        return emitted

    for layer, top_shapes in view.sources:
        run(layer, None, top_shapes, "")
    refused: list[tuple[str, str, str]] = []
    for layer, module, top_shapes in view.layers:
        try:
            emitted = run(layer, module, top_shapes, names.keras(layer.name))
        except KerasUnsupportedError as exc:  # go on, to list every refused layer at once
            refused.extend(exc.problems)
            for top, shape in zip(layer.tops, top_shapes):
                blobs[top] = KerasTensor("None", tuple(shape), CAFFE)
            continue
        records.append(LayerRecord(layer, emitted.layer_name, emitted.tops, emitted.weights))
    if refused:
        raise KerasUnsupportedError(refused, view.source)
    inputs = [blobs[n] for n in view.input_names]
    outputs = []
    for name in view.output_names:  # 4-D and 5-D outputs are channels-last
        t = blobs[name]
        if t.rank >= 4 and t.layout == CAFFE:
            var = names.var(f"{name}_channels_last")
            dims = tuple(range(2, t.rank)) + (1,)
            body.append(f"{var} = keras.layers.Permute({lit(dims)}, "
                        f"name={lit(names.keras(name + '__channels_last'))})({t.var})")
            t = KerasTensor(var, t.caffe_shape, CHANNELS_LAST)
        outputs.append(t)
    text = _file_text(view, body, runtime, inputs, outputs, version or __version__, records)
    return GeneratedKeras(text, records, inputs, outputs)


def _wrap(text: str) -> str:
    """A docstring paragraph wrapped at 96 columns (doc_text'ed text: no quotes to break)."""
    return textwrap.fill(text, 96, break_long_words=False, break_on_hyphens=False)


def _describe(tensors: list[KerasTensor], names: list[str]) -> str:
    parts = []
    for t, n in zip(tensors, names):
        shape = ("N",) + tuple(str(d) for d in t.keras_shape[1:])
        order = "channels-last" if t.layout == CHANNELS_LAST else "Caffe order"
        parts.append(f"{doc_text(n)} ({', '.join(shape)}; {order})")
    return ", ".join(parts) or "none"


def _file_text(view: NetView, body: list[str], runtime: list[str], inputs: list[KerasTensor],
               outputs: list[KerasTensor], version: str, records: list[LayerRecord]) -> str:
    renamed = {r.keras_name: r.layer.name for r in records
               if r.keras_name is not None and r.keras_name != r.layer.name}
    tops = {r.keras_name: tuple((top, t.layout) for top, t in zip(r.layer.tops, r.tops))
            for r in records if r.keras_name is not None}
    out = [
        f'"""{doc_text(view.name)}: Keras 3 model converted from Caffe by modelport '
        f'{doc_text(version)}.',
        "",
        _wrap(f"Source: {doc_text(view.source)}. Standalone: needs only keras and numpy; runs "
              "on every Keras backend (TensorFlow, JAX, PyTorch). `build()` returns the model "
              f"without weights; `load(weights=None)` builds it and reads {WEIGHTS_FILE} beside "
              "this file. Each Keras layer is named after its Caffe layer ('/' written as '__', "
              "'.' and NUL as '_'; CAFFE_LAYER_NAMES maps back)."),
        "",
        "Layout: inputs and 4-D outputs are channels-last (N x H x W x C), Keras's default; "
        "Caffe's",
        "N x C x H x W is one transpose away:",
        "    x = np.transpose(x_nchw, (0, 2, 3, 1))    y_nchw = np.transpose(y, (0, 3, 1, 2))",
        "",
        _wrap(f"Inputs: {_describe(inputs, view.input_names)}."),
        _wrap(f"Outputs: {_describe(outputs, view.output_names)}."),
        "Caffe semantics Keras lacks are the custom layers below (keras.ops only).",
        '"""',
        "",
        "import os",
        "",
        "import keras",
        "import numpy as np",
        "",
        f"INPUT_NAMES = {lit(tuple(view.input_names))}",
        f"OUTPUT_NAMES = {lit(tuple(view.output_names))}",
        "# 'channels_last': Caffe's axes (0, 2, 3, ..., 1); 'caffe': Caffe's own axis order",
        f"INPUT_LAYOUTS = {lit(tuple(t.layout for t in inputs))}",
        f"OUTPUT_LAYOUTS = {lit(tuple(t.layout for t in outputs))}",
        "# Keras layer -> the Caffe blobs it outputs (its own tops), each with its layout",
        "LAYER_TOPS = {" + "".join(f"\n    {lit(k)}: {lit(v)}," for k, v in tops.items())
        + ("\n}" if tops else "}"),
        f"CAFFE_LAYER_NAMES = {lit(renamed)}",
    ]
    for snippet in _runtime_sources(runtime):
        out += ["", "", snippet]
    ins = inputs[0].var if len(inputs) == 1 else "[" + ", ".join(t.var for t in inputs) + "]"
    outs = (outputs[0].var if len(outputs) == 1
            else "[" + ", ".join(t.var for t in outputs) + "]")
    model_name = NameAllocator().keras(view.name or "net")
    out += [
        "",
        "",
        "def build():",
        '    """The model without weights (one line per Caffe layer)."""',
        *[f"    {line}" for line in body],
        f"    return keras.Model(inputs={ins}, outputs={outs}, name={lit(model_name)})",
        "",
        "",
        "def load(weights=None):",
        f'    """build() with its weights (default: {WEIGHTS_FILE} beside this file)."""',
        "    path = weights or os.path.join(os.path.dirname(os.path.abspath(__file__)),",
        f"                                   {lit(WEIGHTS_FILE)})",
        "    model = build()",
        "    model.load_weights(path)",
        "    return model",
    ]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Runtime sources: read from backends/keras/runtime*.py without importing them (they import
# keras; writing source must not).


@functools.lru_cache(maxsize=1)
def _runtime_table() -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """(top-level name -> its source, decorators included; name -> names it needs)."""
    sources: dict[str, str] = {}
    needs: dict[str, tuple[str, ...]] = {}
    for path in sorted(pathlib.Path(__file__).parent.glob("runtime*.py")):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        lines = text.splitlines()
        for node in tree.body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                assert node.end_lineno is not None
                sources[node.name] = "\n".join(lines[start - 1: node.end_lineno])
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name):
                target = node.targets[0].id
                if target == "NEEDS":
                    needs.update(ast.literal_eval(node.value))
                elif target.isupper() and target != "__all__":
                    assert node.end_lineno is not None
                    sources[target] = "\n".join(lines[node.lineno - 1: node.end_lineno])
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and node.target.id == "NEEDS" and node.value is not None:
                needs.update(ast.literal_eval(node.value))
    return sources, needs


def _runtime_sources(names: list[str]) -> list[str]:
    """The snippets for `names` and what they need, each once, needs first."""
    sources, needs = _runtime_table()
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        for dep in needs.get(name, ()):
            visit(dep)
        if name not in sources:
            raise AssertionError(f"runtime name {name!r} is not defined in "
                                 "backends/keras/runtime*.py")  # an emitter bug
        ordered.append(name)

    for n in names:
        visit(n)
    return [sources[n] for n in ordered]
