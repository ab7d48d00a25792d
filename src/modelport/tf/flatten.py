"""Where the NHWC -> NCHW row re-order of a Dense after a Flatten gets its (H, W, C).

Keras flattens an NHWC map in `(h, w, c)` order; a PyTorch twin flattens NCHW in `(c, h, w)`
order, so the first Dense's kernel rows must be re-ordered (`layouts.dense_kernel`). The map's
shape comes from, in this order:

- `flatten_shapes={name: (H, W, C)}`, keyed by the nn.Linear's module path or the Keras layer
  name of the Dense (`{}` says: no re-order anywhere);
- tracing: the module runs once on `sample_input` (eval mode, no grad, training flags restored)
  under a TorchFunctionMode that sees every `flatten` / `reshape` / `view` of a 4-D tensor
  into (N, C*H*W), whether from nn.Flatten or in `forward`; the next nn.Linear called records
  (H, W, C). A map the twin itself permuted to NHWC first (`permute(0, 2, 3, 1)`) needs no
  re-order and records none.

Without either, a module with an nn.Flatten, or a source with a convolution before a Dense
ported onto an nn.Linear, is refused rather than ported with rows in the wrong order. A Keras
model built `channels_first` (a layer config says so) flattens NCHW already: nothing is
re-ordered unless `flatten_shapes` says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from modelport.errors import ConfigError
from modelport.tf.mapping import SourceGroup
from modelport.tf.units import Unit

__all__ = ["FlattenShapes", "flatten_shapes_for", "trace_flatten"]

FlattenShapes = dict[str, tuple[int, int, int]]

_RESHAPES = {torch.flatten, torch.Tensor.flatten, torch.reshape, torch.Tensor.reshape,
             torch.Tensor.view}
_KEEPS_LAYOUT = {torch.Tensor.contiguous, torch.Tensor.clone}


class _Watch(TorchFunctionMode):
    """Records the last 4-D -> 2-D flatten (its NCHW input shape, or None for a map already
    permuted to NHWC)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[int, ...] | None] = []
        self.nhwc: set[int] = set()  # ids of tensors permuted (0, 2, 3, 1)

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not isinstance(out, torch.Tensor):
            return out
        if func is torch.Tensor.permute or func is torch.permute:
            dims = tuple(args[1:]) if len(args) > 2 else tuple(args[1]) if len(args) > 1 \
                else tuple(kwargs.get("dims", ()))
            if x.dim() == 4 and tuple(int(d) for d in dims) == (0, 2, 3, 1):
                self.nhwc.add(id(out))
        elif func in _KEEPS_LAYOUT and id(x) in self.nhwc:
            self.nhwc.add(id(out))
        elif func in _RESHAPES and x.dim() == 4 and out.dim() == 2 and \
                out.shape[0] == x.shape[0]:
            self.pending[:] = [None if id(x) in self.nhwc else tuple(x.shape)]
        return out


def trace_flatten(module: nn.Module, sample_input: Any) -> FlattenShapes:
    """{nn.Linear path: (H, W, C)} for each nn.Linear called first after a flatten of an NCHW
    map (see the module docstring)."""
    names = {id(m): p for p, m in module.named_modules()}
    found: FlattenShapes = {}
    watch = _Watch()

    def on_linear(mod: nn.Module, args: tuple[Any, ...]) -> None:
        if watch.pending and watch.pending[0] is not None:
            _, c, h, w = watch.pending[0]
            found.setdefault(names[id(mod)], (int(h), int(w), int(c)))
        watch.pending.clear()

    hooks = [m.register_forward_pre_hook(on_linear) for m in module.modules()
             if isinstance(m, nn.Linear)]
    modes = {id(m): m.training for m in module.modules()}
    module.eval()
    try:
        args = sample_input if isinstance(sample_input, tuple | list) else (sample_input,)
        with torch.no_grad(), watch:
            module(*args)
    except Exception as exc:  # the user's module fails on the sample: one line, not a traceback
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"port_weights: running the module on sample_input failed "
                          f"({type(exc).__name__}: {first}). Fix: give an input the module "
                          "accepts (NCHW)") from None
    finally:
        for h in hooks:
            h.remove()
        for m in module.modules():
            m.training = modes[id(m)]
    return found


def flatten_shapes_for(module: nn.Module, groups: list[SourceGroup], units: list[Unit],
                       flatten_shapes: Mapping[str, Sequence[int]] | None, sample_input: Any
                       ) -> tuple[FlattenShapes, FlattenShapes, list[str]]:
    """(by nn.Linear path, by Keras layer name, notes) from the arguments (module docstring)."""
    by_unit: FlattenShapes = {}
    by_layer: FlattenShapes = {}
    notes: list[str] = []
    unit_paths = {u.path for u in units}
    for name, shape in (flatten_shapes or {}).items():
        try:
            dims = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            dims = ()
        if len(dims) != 3 or min(dims) < 1:
            raise ConfigError(f"flatten_shapes['{name}'] = {shape!r} must be (H, W, C), three "
                              "positive integers")
        (by_unit if name in unit_paths else by_layer)[name] = (dims[0], dims[1], dims[2])
    if any(g.config.get("data_format") == "channels_first" for g in groups):
        notes.append("the Keras model is channels_first: its Flatten already reads (c, h, w), "
                     "no Dense rows are re-ordered" + (" except by flatten_shapes"
                                                       if by_unit or by_layer else ""))
        return by_unit, by_layer, notes
    if sample_input is not None:
        for path, (h, w, c) in trace_flatten(module, sample_input).items():
            by_unit.setdefault(path, (h, w, c))
            notes.append(f"traced: nn.Linear '{path}' reads a flatten of an NCHW map {c}x{h}x{w}:"
                         " its Dense rows are re-ordered from Keras's NHWC flatten")
        return by_unit, by_layer, notes
    if flatten_shapes is not None:
        return by_unit, by_layer, notes
    flats = [p for p, m in module.named_modules() if isinstance(m, nn.Flatten)]
    kinds = [g.kind for g in groups]
    convs = [i for i, k in enumerate(kinds) if k in ("conv", "conv?", "depthwise", "separable")]
    conv_then_dense = bool(convs) and "dense" in kinds[convs[0]:]
    linears = [u.path for u in units if u.kind == "dense"]
    if flats or (conv_then_dense and linears):
        why = f"the module has nn.Flatten '{flats[0]}'" if flats else \
            f"the source has a convolution before a Dense (nn.Linear '{linears[0]}')"
        raise ConfigError(
            f"port_weights: {why}: a Dense after a Flatten of an NHWC map needs its rows "
            "re-ordered for NCHW, and the map's (H, W, C) is unknown. Fix: pass "
            "sample_input=<an (N, C, H, W) tensor> (the module is traced) or "
            "flatten_shapes={'<linear path>': (H, W, C)} (flatten_shapes={} when no re-order "
            "is needed: global pooling, a 1x1 map, or a twin that flattens NHWC; CLI: "
            "--sample-shape N,C,H,W or --flatten-shape LINEAR=H,W,C / none)")
    return by_unit, by_layer, notes
