"""The Keras emitter registry: one `@register_keras("<Caffe type>")` function per Caffe type.

An emitter turns one converted layer into what `model_keras.py` holds for it. It receives the
IR layer and the layer's converted torch submodule (`backends/torch_module.CaffeNet`), so the
Caffe semantics modelport's converters already decoded are reused: an emitter reads the
module's attributes and tensors, never the prototxt. Through the `EmitContext` it sees the
Keras tensors of its bottoms (their variable names in `build()`, Caffe shapes and layouts),
and it returns a `KerasEmitted`: the source line(s) of `build()` that assign its tops, the
weights of its Keras layer in Keras order and layout (numpy), and the runtime custom classes
(`backends/keras/runtime.py`) the lines use.

Layouts. A Keras tensor holds a Caffe blob either in Caffe's axis order (`CAFFE`) or
channels-last (`CHANNELS_LAST`: Caffe axes (0, 2, 3, ..., 1), i.e. NHWC for N x C x H x W).
4-D (and 5-D) inputs and convolution/pooling outputs are channels-last; blobs of 2 or fewer
axes are always in Caffe order. `EmitContext.as_layout` writes the Permute that converts one
into the other when an emitter needs a given layout.

Rules every emitter follows:
- the Keras layer that produces the tops is named `ctx.keras_name` (the Caffe layer name,
  `/` written as `__` since Keras forbids `/`, `.` as `_` since Keras's torch backend keys
  its parameters by layer name), so the self-check and `model.get_layer` find
  it; helper layers it adds (padding, permutes) are named `ctx.helper_name("pad")`;
- every user string is written with `repr()` (`lit`); nothing from a prototxt runs as code;
- what has no faithful Keras form raises `ctx.unsupported(why, fix)` (an
  UnsupportedLayerError naming the layer); an approximation is never emitted.

Keras itself is not imported here: emitters produce text and numpy arrays only.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.backends.codegen_base import lit
from modelport.errors import UnsupportedLayerError
from modelport.ir import Layer

__all__ = [
    "CAFFE",
    "CHANNELS_LAST",
    "EmitContext",
    "KerasUnsupportedError",
    "KerasEmitted",
    "KerasEmitter",
    "KerasTensor",
    "emitter_for",
    "find_emitter",
    "keras_types",
    "lit",
    "register_keras",
    "to_numpy",
]

Shape = tuple[int, ...]

CAFFE = "caffe"                  # Keras axes = Caffe axes
CHANNELS_LAST = "channels_last"  # Keras axes = Caffe axes (0, 2, ..., rank-1, 1)


def to_numpy(t: Any) -> np.ndarray:
    """A torch tensor (parameter or buffer) of a converted module as a float32 numpy array,
    the form an emitter gives Keras its weights in."""
    return np.asarray(t.detach().cpu().float().numpy(), dtype=np.float32)


def keras_perm(rank: int, layout: str) -> tuple[int, ...]:
    """Caffe axis of each Keras axis: identity for CAFFE, (0, 2, ..., rank-1, 1) channels-last."""
    if layout == CHANNELS_LAST and rank >= 3:
        return (0, *range(2, rank), 1)
    return tuple(range(rank))


class KerasUnsupportedError(UnsupportedLayerError):
    """Layers without a faithful Keras form (or without a Keras emitter); lists all of them,
    each with what to do."""

    def __init__(self, problems: Sequence[tuple[str, str, str]], source: str = "the net") -> None:
        super().__init__(problems, source)
        listed = "; ".join(f"layer '{n}' (type {t}): {why}" for n, t, why in self.problems)
        count = len(self.problems)
        self.args = (f"{count} layer{'s' if count != 1 else ''} in {source} cannot be exported "
                     f"to Keras: {listed}. Nothing was written",)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class KerasTensor:
    """A Caffe blob as a Keras tensor of the generated `build()`: its Python variable, its
    Caffe shape (batch axis included) and the layout its Keras axes follow."""

    var: str
    caffe_shape: Shape
    layout: str = CAFFE

    def __post_init__(self) -> None:
        if len(self.caffe_shape) < 3 and self.layout != CAFFE:
            object.__setattr__(self, "layout", CAFFE)  # one layout below 3 axes

    @property
    def rank(self) -> int:
        return len(self.caffe_shape)

    @property
    def perm(self) -> tuple[int, ...]:
        """Caffe axis held by each Keras axis."""
        return keras_perm(self.rank, self.layout)

    @property
    def keras_shape(self) -> Shape:
        """The Keras tensor's shape (batch axis included)."""
        return tuple(self.caffe_shape[a] for a in self.perm)

    def keras_axis(self, caffe_axis: int) -> int:
        """The Keras axis holding Caffe axis `caffe_axis` (negative counts from the end)."""
        axis = caffe_axis + self.rank if caffe_axis < 0 else caffe_axis
        return self.perm.index(axis)

    def to_caffe(self, array: np.ndarray) -> np.ndarray:
        """A numpy value of this tensor (Keras axes) in Caffe's axis order."""
        if self.layout == CAFFE or array.ndim != self.rank:
            return array
        inverse = tuple(self.perm.index(a) for a in range(self.rank))
        return np.ascontiguousarray(np.transpose(array, inverse))


@dataclass
class KerasEmitted:
    """What one Caffe layer becomes in model_keras.py.

    `lines`: statements of `build()` (normally one) that assign the tops' variables;
    `tops`: the KerasTensor of each Caffe top (in top order), as the layer named
    `ctx.keras_name` outputs them (`None` names no layer: the tops are aliases of tensors
    other lines made, and the self-check skips them);
    `weights`: `model.get_layer(keras_name).set_weights(weights)`, Keras order and layout;
    `runtime`: names of custom classes/functions of backends/keras/runtime.py the lines use.
    """

    lines: list[str]
    tops: list[KerasTensor]
    weights: list[np.ndarray] = field(default_factory=list)
    runtime: tuple[str, ...] = ()
    layer_name: str | None = None


class EmitContext:
    """What an emitter sees of the net around one layer (see the module docstring)."""

    def __init__(self, layer: Layer, module: Any, bottoms: Sequence[KerasTensor],
                 top_shapes: Sequence[Shape], keras_name: str, ident: str,
                 names: NameAllocator, source: str = "the net") -> None:
        self.layer = layer
        self.module = module
        self.bottoms = tuple(bottoms)
        self.top_shapes = tuple(tuple(int(d) for d in s) for s in top_shapes)
        self.keras_name = keras_name
        self.ident = ident
        self.names = names
        self.source = source
        self.pre_lines: list[str] = []  # lines as_layout() adds before the emitter's own
        self._runtime: list[str] = []

    # -- names ------------------------------------------------------------------------------
    @property
    def name_arg(self) -> str:
        """`name='<keras name>'` for the layer producing the tops."""
        return f"name={lit(self.keras_name)}"

    def helper_name(self, role: str) -> str:
        """A unique Keras name for a helper layer of this one (`conv1__pad`)."""
        return self.names.keras(f"{self.keras_name}__{role}")

    def top_var(self, index: int = 0) -> str:
        """A new Python variable for top `index` (unique in build(); call once per top)."""
        top = self.layer.tops[index] if index < len(self.layer.tops) else f"top{index}"
        return self.names.var(top)

    def temp_var(self, role: str) -> str:
        """A fresh Python variable for an intermediate tensor."""
        return self.names.var(f"{self.ident}_{role}")

    # -- layouts ----------------------------------------------------------------------------
    def as_layout(self, tensor: KerasTensor, layout: str) -> KerasTensor:
        """`tensor` in `layout`: itself when it already is, else a Permute line (added to
        `pre_lines`, before the emitter's own lines) and the permuted tensor."""
        if tensor.layout == layout or tensor.rank < 3:
            return tensor
        target = KerasTensor("", tensor.caffe_shape, layout)
        # Keras axis i of the target holds Caffe axis target.perm[i], found in the source at
        # Keras axis tensor.perm.index(...); Permute counts axes from 1, without the batch.
        dims = tuple(tensor.perm.index(a) for a in target.perm[1:])
        var = self.temp_var(layout)
        self.pre_lines.append(f"{var} = keras.layers.Permute({lit(dims)}, "
                              f"name={lit(self.helper_name('to_' + layout))})({tensor.var})")
        return KerasTensor(var, tensor.caffe_shape, layout)

    def same_layout(self, tensors: Sequence[KerasTensor]) -> list[KerasTensor]:
        """The tensors all in the first one's layout (Concat, Eltwise, ...)."""
        layout = next((t.layout for t in tensors if t.rank >= 3), CAFFE)
        return [self.as_layout(t, layout) for t in tensors]

    # -- errors -----------------------------------------------------------------------------
    def unsupported(self, why: str, fix: str | None = None) -> KerasUnsupportedError:
        """The error for what has no faithful Keras form (raise it); `fix` says what to do."""
        text = why.rstrip(".")
        text += f" (Fix: {fix.rstrip('.')})" if fix else ""
        return KerasUnsupportedError([(self.layer.name, self.layer.type,
                                       f"no faithful Keras form for {text}")], self.source)

    def emitted(self, lines: Sequence[str], tops: Sequence[KerasTensor],
                weights: Sequence[np.ndarray] = (), runtime: Sequence[str] = ()) -> KerasEmitted:
        """A KerasEmitted with the context's pre_lines first and the layer named keras_name."""
        return KerasEmitted([*self.pre_lines, *lines], list(tops),
                            [np.ascontiguousarray(w, dtype=np.float32) for w in weights],
                            tuple(runtime), self.keras_name)


KerasEmitter = Callable[[EmitContext], KerasEmitted]
#: `when(layer, module) -> bool`: whether an emitter handles this form of its type.
Predicate = Callable[[Layer, Any], bool]

# Caffe type -> [(predicate or None, emitter)], newest first: a later registration for a
# form of a type (3-D Convolution, an unusual Reshape) is tried before the general one.
_EMITTERS: dict[str, list[tuple[Predicate | None, KerasEmitter]]] = {}


def register_keras(*caffe_types: str, when: Predicate | None = None,
                   ) -> Callable[[KerasEmitter], KerasEmitter]:
    """Register `fn(ctx) -> KerasEmitted` as the Keras emitter of the given Caffe types; with
    `when`, only for the layers (and their converted modules) it accepts."""

    def decorator(fn: KerasEmitter) -> KerasEmitter:
        for t in caffe_types:
            entries = _EMITTERS.setdefault(t, [])
            entries[:] = [e for e in entries if e[1] is not fn]  # re-registering replaces
            entries.insert(0, (when, fn))
        return fn

    return decorator


_LOADED = False


def _load_builtin() -> None:
    """Import the emitter modules of this package (emit_*.py) once, so they register."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib
    import pathlib
    import pkgutil

    package = __name__.rpartition(".")[0]
    for info in sorted(pkgutil.iter_modules([str(pathlib.Path(__file__).parent)]),
                       key=lambda i: i.name):
        if info.name.startswith("emit_"):
            importlib.import_module(f"{package}.{info.name}")


def find_emitter(layer: Layer, module: Any) -> KerasEmitter | None:
    """The emitter for this layer (the newest registered for its type whose `when` accepts
    it), or None when there is none."""
    _load_builtin()
    for when, fn in _EMITTERS.get(layer.type, ()):
        if when is None or when(layer, module):
            return fn
    return None


def emitter_for(caffe_type: str) -> KerasEmitter | None:
    """The newest emitter registered for a Caffe type (any form), or None."""
    _load_builtin()
    entries = _EMITTERS.get(caffe_type)
    return entries[0][1] if entries else None


def keras_types() -> frozenset[str]:
    """Every Caffe type with a registered Keras emitter (for some form of it)."""
    _load_builtin()
    return frozenset(t for t, entries in _EMITTERS.items() if entries)


# ---------------------------------------------------------------------------------------------
# Names

# Keras refuses `/` in names; on the torch backend a variable's path (`<layer>/kernel`) keys a
# torch ParameterDict, which refuses `.`; model.weights.h5 stores the paths as HDF5 strings,
# which cannot hold NUL.
_KERAS_SUBSTITUTES = (("/", "__"), (".", "_"), ("\x00", "_"))


class NameAllocator:
    """Unique Keras layer names and Python variable names for one generated file."""

    def __init__(self, reserved_vars: Sequence[str] = ()) -> None:
        self._keras: set[str] = set()
        self._vars: set[str] = set(reserved_vars)
        self._idents: set[str] = set()

    def keras(self, wanted: str) -> str:
        """`wanted` as a Keras layer name usable on every backend and in model.weights.h5
        (`/` -> `__`, `.` and NUL -> `_`), made unique (`_1`, `_2`, ...)."""
        base = wanted
        for bad, good in _KERAS_SUBSTITUTES:
            base = base.replace(bad, good)
        base = base or "_"
        name, n = base, 0
        while name in self._keras:
            n += 1
            name = f"{base}_{n}"
        self._keras.add(name)
        return name

    def var(self, wanted: str) -> str:
        """A fresh Python variable (`t_...`) resembling `wanted` for build()."""
        base = _identifier(wanted)
        return _fresh(base if base.startswith("t_") else "t_" + base, self._vars)

    def ident(self, wanted: str) -> str:
        """A unique Python identifier per layer resembling its name (for helper names)."""
        return _fresh(_identifier(wanted), self._idents)


def _identifier(text: str) -> str:
    """`text` as an ASCII identifier: other characters `_`, no leading digit, no keyword."""
    base = re.sub(r"\W", "_", text, flags=re.ASCII) or "_"
    if base[0].isdigit():
        base = "_" + base
    if keyword.iskeyword(base) or keyword.issoftkeyword(base):
        base += "_"
    return base


def _fresh(base: str, taken: set[str]) -> str:
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name
