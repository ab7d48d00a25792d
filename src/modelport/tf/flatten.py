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
model built `channels_first` (a layer config says so) is refused the same way unless
`flatten_shapes` is given: its `Flatten()` reads (c, h, w) (`{}`: no re-order) but
`Flatten(data_format="channels_first")` permutes to (h, w, c) first (Keras keeps weights
format-independent that way: give the shape), and no file keeps a Flatten's config.

1-D and 3-D maps work the same: `(L, C)` for a flatten of an (N, C, L) map, `(D, H, W, C)` for
(N, C, D, H, W). A 3-D tensor is only taken for a Conv1D map when the source has a 1-D
convolution (an (N, T, D) sequence kept channels last needs no re-order).
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

FlattenShapes = dict[str, tuple[int, ...]]

_RESHAPES = {torch.flatten, torch.Tensor.flatten, torch.reshape, torch.Tensor.reshape,
             torch.Tensor.view}
_KEEPS_LAYOUT = {torch.Tensor.contiguous, torch.Tensor.clone}


class _Watch(TorchFunctionMode):
    """Records the last 3/4/5-D -> 2-D flatten (its channels-first input shape, or None for a
    map already permuted channels last)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[int, ...] | None] = []
        self.nhwc: set[int] = set()  # ids of tensors permuted channels last, (0, 2, 3, 1) ...

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not isinstance(out, torch.Tensor):
            return out
        if func is torch.Tensor.permute or func is torch.permute:
            dims = tuple(args[1:]) if len(args) > 2 else tuple(args[1]) if len(args) > 1 \
                else tuple(kwargs.get("dims", ()))
            if x.dim() in (3, 4, 5) and \
                    tuple(int(d) for d in dims) == (0, *range(2, x.dim()), 1):
                self.nhwc.add(id(out))
        elif func in _KEEPS_LAYOUT and id(x) in self.nhwc:
            self.nhwc.add(id(out))
        elif func in _RESHAPES and x.dim() in (3, 4, 5) and out.dim() == 2 and \
                out.shape[0] == x.shape[0]:
            self.pending[:] = [None if id(x) in self.nhwc else tuple(x.shape)]
        return out


def trace_flatten(module: nn.Module, sample_input: Any) -> FlattenShapes:
    """{nn.Linear path: (*spatial, C)} for each nn.Linear called first after a flatten of a
    channels-first map (see the module docstring)."""
    names = {id(m): p for p, m in module.named_modules()}
    found: FlattenShapes = {}
    watch = _Watch()

    def on_linear(mod: nn.Module, args: tuple[Any, ...]) -> None:
        if watch.pending and watch.pending[0] is not None:
            _, c, *spatial = watch.pending[0]
            found.setdefault(names[id(mod)], (*(int(d) for d in spatial), int(c)))
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


_CONVS = ("conv", "conv?", "depthwise", "separable", "conv_transpose")


def _kernel_rank(group: SourceGroup) -> int:
    """The rank of the group's (depthwise) kernel, 0 without one."""
    kernels = [v for v, r in zip(group.variables, group.roles)
               if r in ("kernel", "depthwise_kernel")]
    return kernels[0].value.ndim if kernels else 0


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
        if not 2 <= len(dims) <= 4 or min(dims) < 1:
            raise ConfigError(f"flatten_shapes['{name}'] = {shape!r} must be (H, W, C) (or (L, "
                              "C), (D, H, W, C)): positive integers")
        (by_unit if name in unit_paths else by_layer)[name] = dims
    flats = [p for p, m in module.named_modules() if isinstance(m, nn.Flatten)]
    kinds = [g.kind for g in groups]
    convs = [i for i, k in enumerate(kinds) if k in _CONVS]
    conv_then_dense = bool(convs) and "dense" in kinds[convs[0]:]
    linears = [u.path for u in units if u.kind == "dense"]
    if any(g.config.get("data_format") == "channels_first" for g in groups):
        if flatten_shapes is not None:
            notes.append("the Keras model is channels_first: Dense rows re-ordered only as "
                         "flatten_shapes says")
            return by_unit, by_layer, notes
        traced = trace_flatten(module, sample_input) if sample_input is not None else {}
        if traced or flats or (conv_then_dense and linears):
            first = next(iter(traced), None) or (linears[0] if linears else flats[0])
            raise ConfigError(
                f"port_weights: the Keras model is channels_first and nn.Linear '{first}' "
                "reads a flatten: Keras's Flatten() keeps (c, h, w) order, but "
                "Flatten(data_format='channels_first') permutes to (h, w, c) first, and the "
                "file does not keep the Flatten's config. Fix: flatten_shapes={} for Flatten()"
                f", flatten_shapes={{'{first}': (H, W, C)}} for "
                "Flatten(data_format='channels_first') (CLI: --flatten-shape none / "
                "LINEAR=H,W,C)")
        notes.append("the Keras model is channels_first and no Dense reads a flatten: no rows "
                     "re-ordered")
        return by_unit, by_layer, notes
    if sample_input is not None:
        conv1d = any(g.kind in _CONVS and _kernel_rank(g) == 3 for g in groups)
        for path, dims in trace_flatten(module, sample_input).items():
            c, spatial = dims[-1], "x".join(map(str, dims[:-1]))
            if len(dims) == 2 and not conv1d:
                notes.append(f"traced: nn.Linear '{path}' reads a flatten of a 3-D tensor; the "
                             "source has no 1-D convolution, so it is taken as a sequence "
                             "(N, T, D) and its rows are not re-ordered")
                continue
            by_unit.setdefault(path, dims)
            if len(dims) == 3:
                notes.append(f"traced: nn.Linear '{path}' reads a flatten of an NCHW map "
                             f"{c}x{spatial}: its Dense rows are re-ordered from Keras's NHWC "
                             "flatten")
            else:
                notes.append(f"traced: nn.Linear '{path}' reads a flatten of a channels-first "
                             f"map {c}x{spatial}: its Dense rows are re-ordered from Keras's "
                             "channels-last flatten")
        return by_unit, by_layer, notes
    if flatten_shapes is not None:
        return by_unit, by_layer, notes
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
