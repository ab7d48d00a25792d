"""The Keras export's self-check: the generated model, run on the Keras backend in use with the
same inputs as the PyTorch module, must give every blob that survives as a named Keras layer
output within `verify/tolerance.py`'s rule (passed in by the exporter); otherwise ParityError
names the first divergent layer (Caffe order), its type, max|diff| and the tolerance, and
nothing is written.

Each converted layer's own tops are compared (an in-place ReLU's output under its own name,
not only the blob's final value), transposed from the Keras layout back to Caffe's.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modelport.backends.keras.source import GeneratedKeras, LayerRecord
from modelport.backends.keras.view import NetView
from modelport.errors import ParityError
from modelport.ir import Layer

__all__ = ["KerasCheck", "build_model", "check_model", "exec_source", "keras_inputs",
           "run_outputs"]


class ToleranceRule(Protocol):
    """verify/tolerance.Tolerance (tools floor: the exporter passes it in)."""

    def allowed(self, ref: np.ndarray) -> float: ...

    def allowed_for(self, layer: Layer | None, top: int, ref: np.ndarray
                    ) -> float | np.ndarray: ...

    def describe(self) -> str: ...


@dataclass
class KerasCheck:
    """What the self-check compared: max|diff| per checked layer (by Caffe name) and per
    output blob, on which backend."""

    backend: str
    layer_diffs: dict[str, float] = field(default_factory=dict)
    output_diffs: dict[str, float] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return max([*self.layer_diffs.values(), *self.output_diffs.values()], default=0.0)


def exec_source(text: str, path: str, name: str = "modelport_keras_model") -> types.ModuleType:
    """Run a generated model_keras.py in a fresh module namespace (not via sys.modules)."""
    module = types.ModuleType(name)
    module.__file__ = path
    exec(compile(text, path, "exec"), module.__dict__)  # noqa: S102 - our own generated file
    return module


def build_model(namespace: types.ModuleType, generated: GeneratedKeras) -> Any:
    """`build()` of the generated file, then every layer's weights set from the emitters."""
    model = namespace.build()
    for record in generated.records:
        if record.keras_name is not None and record.weights:
            model.get_layer(record.keras_name).set_weights(record.weights)
    return model


def keras_inputs(generated: GeneratedKeras, inputs: Mapping[str, np.ndarray],
                 names: Sequence[str]) -> list[np.ndarray]:
    """The inputs (Caffe layout) in the Keras model's layouts, in input order."""
    return [np.ascontiguousarray(np.transpose(inputs[n], t.perm), dtype=np.float32)
            for n, t in zip(names, generated.inputs)]


def run_outputs(model: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The model's outputs as numpy (inference mode), always a list."""
    import keras

    out = model(arrays[0] if len(arrays) == 1 else arrays, training=False)
    outs = out if isinstance(out, list | tuple) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outs]


def _probe(model: Any, records: list[LayerRecord]) -> tuple[Any, list[tuple[int, int]]]:
    """A model whose outputs are every named layer's outputs, and (record, top) of each."""
    import keras

    tensors, where = [], []
    for i, record in enumerate(records):
        if record.keras_name is None:
            continue
        out = model.get_layer(record.keras_name).output
        outs = out if isinstance(out, list | tuple) else [out]
        for j, t in enumerate(outs[: len(record.tops)]):
            tensors.append(t)
            where.append((i, j))
    return keras.Model(inputs=model.input, outputs=tensors), where


def _max_diff(got: np.ndarray, ref: np.ndarray) -> float:
    """max|got - ref| (equal values, infinities included, and both NaN count as equal; any
    other NaN is infinitely far)."""
    if ref.size == 0:
        return 0.0
    d = np.atleast_1d(np.abs(got.astype(np.float64) - ref.astype(np.float64)))  # 0-axis blobs
    d[np.atleast_1d((got == ref) | (np.isnan(got) & np.isnan(ref)))] = 0.0
    return float("inf") if np.isnan(d).any() else float(d.max())


def check_model(view: NetView, generated: GeneratedKeras, model: Any,
                inputs: Mapping[str, np.ndarray], tolerance: ToleranceRule) -> KerasCheck:
    """Compare every named layer output of `model` with the torch modules' tops on `inputs`
    (Caffe layout); ParityError naming the first divergent layer."""
    import keras

    result = KerasCheck(keras.backend.backend())
    reference = view.forward_tops(inputs)
    probe, where = _probe(model, generated.records)
    arrays = keras_inputs(generated, inputs, view.input_names)
    outs = run_outputs(probe, arrays) if where else []
    for (i, j), out in zip(where, outs):
        record = generated.records[i]
        layer = record.layer
        got = record.tops[j].to_caffe(out)
        ref = reference[i][j]
        top = layer.tops[j] if j < len(layer.tops) else str(j)
        if got.shape != ref.shape:
            raise ParityError(f"Keras export ({result.backend} backend): layer '{layer.name}' "
                              f"(type {layer.type}) gives top '{top}' of shape {got.shape}, "
                              f"the PyTorch module {ref.shape}; nothing was written. Fix: "
                              "report this net (the Keras emitter of this type is wrong)")
        worst = _max_diff(got, ref)
        allowed = tolerance.allowed_for(layer, j, ref)
        limit = float(np.min(allowed))
        if not worst <= limit or (isinstance(allowed, np.ndarray) and
                                  bool((np.abs(got - ref) > allowed).any())):
            raise ParityError(f"Keras export ({result.backend} backend): first divergent layer "
                              f"'{layer.name}' (type {layer.type}), top '{top}': max|diff| "
                              f"{worst:.3g} > allowed {limit:.3g} ({tolerance.describe()}); "
                              "nothing was written. Fix: report this net (the Keras emitter "
                              "of this type computes something else than Caffe)")
        result.layer_diffs[layer.name] = max(result.layer_diffs.get(layer.name, 0.0), worst)
    return result


def compare_outputs(view: NetView, generated: GeneratedKeras, outputs: list[np.ndarray],
                    inputs: Mapping[str, np.ndarray], what: str,
                    tolerance: ToleranceRule) -> dict[str, float]:
    """max|diff| of the model's final outputs (Keras layouts) against the torch module's
    output blobs; ParityError naming the first output beyond the tolerance."""
    reference = view.forward_tops(inputs)
    final: dict[str, np.ndarray] = {}
    for (layer, _, _), tops in zip(view.layers, reference):
        for top, value in zip(layer.tops, tops):
            final[top] = value
    for name in view.input_names:
        final.setdefault(name, np.asarray(inputs[name], np.float32))
    diffs: dict[str, float] = {}
    for name, t, out in zip(view.output_names, generated.outputs, outputs):
        got, ref = t.to_caffe(out), final[name]
        worst = _max_diff(got, ref) if got.shape == ref.shape else float("inf")
        allowed = tolerance.allowed(ref)
        if not worst <= allowed:
            raise ParityError(f"{what}: output '{name}' differs from the PyTorch module by "
                              f"{worst:.3g} > allowed {allowed:.3g}; nothing was written")
        diffs[name] = worst
    return diffs
