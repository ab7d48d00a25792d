"""`port_weights`: TensorFlow / Keras variables onto a PyTorch module's parameters and buffers.

Pairs are found in three passes, in this priority:

1. explicit rules (`mapping`, a regex rename table, see `mapping.Rules`): a renamed name that is
   a state-dict key fills that key; any other renamed name is a scope matched by name (2.);
2. names, by the built-in Keras and TF-slim conventions (`mapping`): a layer / scope whose
   path equals a module path (`/` and `.` alike, case-insensitive, leading scopes such as
   `InceptionV4/` dropped) fills that module, or the one module of the right kind inside it
   (TF-slim's `Conv2d_1a_3x3/BatchNorm` fills the BatchNorm inside `Conv2d_1a_3x3`);
3. structure: the layers still unmatched, in the file's order (Keras's `model.layers` order
   when the file knows Keras layers; sorted names for a plain checkpoint), against the modules
   still unfilled in registration order; a pair must fit in kind and shape, and the walk stops
   at the first pair that does not (nothing after a misfit is guessed).

Layouts are converted (`layouts`): conv HWIO -> OIHW, depthwise, separable, transposed conv,
Dense transposed and, after a Flatten of an NHWC map, its rows re-ordered. The shape of that map
comes from `flatten_shapes={linear path or Keras layer name: (H, W, C)}` or from tracing the
module on `sample_input` (`flatten`: the first nn.Linear after a flatten of a 4-D tensor); a
module with an nn.Flatten, or a conv-then-Dense source, with neither is refused rather than
ported wrong.

Nothing is written until everything is staged and checked: a failing port (strict=True, the
default, and any problem) raises `PortError` and leaves the module as it was.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelport.errors import ConfigError
from modelport.formats.tf.source import TFVariable, WeightSource
from modelport.tf import layouts
from modelport.tf.flatten import flatten_shapes_for
from modelport.tf.mapping import Rules, SourceGroup, clean_name, group_source, role_of_name
from modelport.tf.report import PortError, PortReport, PortRow
from modelport.tf.settings import setting_problems
from modelport.tf.units import ROLE_ATTRS, Unit, torch_units

__all__ = ["port_weights"]

_BN_ALIASES = ("batchnorm", "bn", "batch_norm", "norm")
_KEEP_BUFFERS = ("num_batches_tracked",)  # torch bookkeeping with no TF counterpart


def _norm(part: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in part.lower())


def _parts(path: str) -> list[str]:
    return [_norm(p) for p in path.replace(".", "/").split("/") if p]


# -- the source ------------------------------------------------------------------------------

def _open(path: Path) -> WeightSource:
    """A file's WeightSource via the formats/tf readers (.keras, Keras .h5, TF checkpoints:
    `open_weights` dispatches by content)."""
    from modelport.formats.tf.open import open_weights

    return open_weights(path)


def as_source(source: Any) -> WeightSource:
    """A WeightSource from a path, a WeightSource, or a dict name -> array."""
    if isinstance(source, WeightSource):
        return source
    if isinstance(source, str | os.PathLike):
        return _open(Path(source))
    if isinstance(source, Mapping):
        variables = {}
        for name, value in source.items():
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) \
                else np.asarray(value)
            variables[str(name)] = TFVariable(str(name), arr)
        return WeightSource(Path("<arrays>"), "arrays", variables)
    raise ConfigError(f"port_weights: source must be a path, a WeightSource or a dict of "
                      f"arrays, not {type(source).__name__}")


# -- layouts ---------------------------------------------------------------------------------

def _layout(group: SourceGroup, role: str, value: np.ndarray, unit: Unit, want: tuple[int, ...],
            nhwc: tuple[int, ...] | None, flip: bool) -> tuple[np.ndarray, str]:
    """The value in the torch layout of `unit`'s slot for `role`, and what was done."""
    spatial = value.ndim - 2
    flipped = " + spatial axes flipped" if flip and spatial > 0 else ""
    kind = unit.kind
    if role == "alpha" and kind == "prelu":
        # Keras PReLU keeps alpha per position, (H, W, C) or (1, 1, C) with shared_axes=[1, 2];
        # nn.PReLU has one per channel: only a shared alpha fits
        if value.size == math.prod(want) and value.shape[-1:] == want[-1:]:
            return value.reshape(want), f"{'x'.join(map(str, value.shape))} -> per channel"
        return value, "as is (a per-position alpha has no nn.PReLU form)"
    if value.ndim != len(want) and not (kind == "dense" and role == "kernel"):
        return value, "as is (rank differs)"
    if role == "kernel" and kind == "conv_transpose":
        return layouts.transpose_kernel(value, flip), "(H,W,out,in) -> (in,out,H,W)" + flipped
    if role == "depthwise_kernel" or (role == "kernel" and group.kind == "depthwise"):
        return layouts.depthwise_kernel(value, flip), \
            "depthwise (H,W,in,mult) -> (in*mult,1,H,W)" + flipped
    if role in ("kernel", "pointwise_kernel") and kind in ("conv", "depthwise"):
        out = layouts.conv_kernel(value, flip)
        if out.shape != want and kind == "depthwise" and group.kind == "conv?":
            return layouts.depthwise_kernel(value, flip), \
                "depthwise (H,W,in,mult) -> (in*mult,1,H,W)" + flipped
        return out, "HWIO -> OIHW" + flipped
    if role == "kernel" and kind == "dense":
        if value.ndim != 2:
            return value, "as is (rank differs)"
        if nhwc is not None and math.prod(nhwc) == value.shape[0] and math.prod(nhwc[:-1]) > 1:
            dims = "x".join(map(str, nhwc))
            what = "NHWC {} flatten -> NCHW" if len(nhwc) == 3 else \
                "channels-last {} flatten -> channels-first"
            return layouts.dense_kernel(value, nhwc), \
                f"(in,out) -> (out,in), rows {what.format(dims)} flatten"
        return layouts.dense_kernel(value), "(in,out) -> (out,in)"
    return value, "as is"


# -- the plan --------------------------------------------------------------------------------

@dataclass
class _Plan:
    staged: dict[str, np.ndarray] = field(default_factory=dict)
    var_rows: dict[str, PortRow] = field(default_factory=dict)
    slot_rows: dict[str, PortRow] = field(default_factory=dict)  # filled slots
    targeted: set[str] = field(default_factory=set)  # keys a variable aimed at
    claimed: dict[str, str] = field(default_factory=dict)  # unit path -> source group name
    direct: dict[str, str] = field(default_factory=dict)  # unit path -> group (rule to a key)
    filled_by: dict[str, str] = field(default_factory=dict)  # state key -> variable name
    eps: list[tuple[Unit, float]] = field(default_factory=list)
    eps_rows: list[PortRow] = field(default_factory=list)
    setting_rows: list[PortRow] = field(default_factory=list)


@dataclass
class _Options:
    flip: bool
    set_eps: bool
    allow_eps: bool
    bn_eps: float | None
    flat_by_unit: dict[str, tuple[int, ...]]
    flat_by_layer: dict[str, tuple[int, ...]]
    check_settings: bool = True
    channels_first: bool = False


def _var_row(v: TFVariable, **kw: Any) -> PortRow:
    return PortRow(variable=v.name, shape=v.shape, dtype=str(v.value.dtype), **kw)


def _layer_of(v: TFVariable, group: SourceGroup) -> str:
    """The variable's source layer: the reader's Keras layer, else the group's scope."""
    return v.layer or group.name


def _targets(group: SourceGroup, units: list[Unit]) -> dict[str, tuple[Unit, str]]:
    """role -> (unit, attr) for placing `group` on `units` (one unit, or a separable pair)."""
    if len(units) == 2:  # separable: depthwise then pointwise
        dw, pw = units
        return {"depthwise_kernel": (dw, "weight"), "pointwise_kernel": (pw, "weight"),
                "bias": (pw, "bias")}
    unit = units[0]
    return {role: (unit, attr) for role, attr in ROLE_ATTRS.get(unit.kind, {}).items()}


def _fit(group: SourceGroup, units: list[Unit], opts: _Options,
         targets: dict[str, tuple[Unit, str]] | None = None
         ) -> tuple[bool, list[tuple[TFVariable, PortRow, np.ndarray | None]], str]:
    """Place every variable of `group` on `units` (or on the given role -> (unit, attr)
    targets): (all fit, rows with staged values, why not)."""
    targets = targets if targets is not None else _targets(group, units)
    out: list[tuple[TFVariable, PortRow, np.ndarray | None]] = []
    why = ""
    for v, role in zip(group.variables, group.roles):
        if role is None:
            out.append((v, _var_row(v, status="leftover",
                                    reason="its role in the layer is unknown"), None))
            why = why or f"'{v.name}' has no known role"
            continue
        place = targets.get(role)
        if place is None or place[1] not in place[0].slots:
            where = " / ".join(u.describe() for u in units)
            out.append((v, _var_row(v, status="leftover",
                                    reason=f"{where} has nothing for a {role}"), None))
            why = why or f"{where} has nothing for {role}"
            continue
        unit, attr = place
        key, want = unit.slots[attr]
        nhwc = opts.flat_by_unit.get(unit.path) or opts.flat_by_layer.get(group.name)
        if v.value.dtype.kind not in "fiub" and v.value.dtype.name != "bfloat16":
            out.append((v, _var_row(v, status="mismatch", target=key, target_shape=want,
                                    reason=f"dtype {v.value.dtype} is not numeric"), None))
            why = why or f"'{v.name}' is not numeric"
            continue
        try:
            arr, desc = _layout(group, role, v.value, unit, want, nhwc, opts.flip)
        except ValueError as exc:  # a flatten shape that does not divide the rows, ...
            arr, desc = v.value, f"layout failed ({exc})"
        if tuple(arr.shape) != want:
            out.append((v, _var_row(v, status="mismatch", target=key, target_shape=want,
                                    layout=desc,
                                    reason=f"shape after the layout is "
                                           f"{'x'.join(map(str, arr.shape))}"), None))
            why = why or (f"'{v.name}' {'x'.join(map(str, v.shape))} does not fit {key} "
                          f"{'x'.join(map(str, want))}")
            continue
        out.append((v, _var_row(v, status="ported", target=key, target_shape=want,
                                layout=desc), arr))
    return not why, out, why


def _commit_group(plan: _Plan, group: SourceGroup, units: list[Unit], rule: str,
                  rows: list[tuple[TFVariable, PortRow, np.ndarray | None]],
                  opts: _Options) -> None:
    for v, row, arr in rows:
        row.rule = rule
        row.layer = _layer_of(v, group)
        plan.var_rows[v.name] = row
        if row.target:
            plan.targeted.add(row.target)
        if arr is not None and row.target in plan.filled_by:
            row.status = "leftover"
            row.reason = f"'{row.target}' is already filled by '{plan.filled_by[row.target]}'"
            continue
        if arr is not None:
            plan.staged[row.target] = arr
            plan.filled_by[row.target] = v.name
    for u in units:
        plan.claimed[u.path] = group.name
    if opts.check_settings and units:
        for why in setting_problems(group, units, opts.channels_first):
            plan.setting_rows.append(PortRow(status="setting", target=units[0].path,
                                             layer=group.name, rule=rule, reason=why))
    if len(units) == 1 and units[0].kind in ("bn", "layernorm"):
        _bn_extras(plan, group, units[0], opts)


def _bn_extras(plan: _Plan, group: SourceGroup, unit: Unit, opts: _Options) -> None:
    """BatchNorm / LayerNorm without gamma (scale=False) / beta (center=False): weight 1 /
    bias 0; and the epsilon check (Keras's default 1e-3 for both, torch's 1e-5)."""
    roles = set(r for r in group.roles if r)
    for role, attr, value, flag in (("gamma", "weight", 1.0, "scale"),
                                    ("beta", "bias", 0.0, "center")):
        if role not in roles and attr in unit.slots:
            key, shape = unit.slots[attr]
            plan.staged[key] = np.full(shape, value, np.float32)
            plan.slot_rows[key] = PortRow(status="filled", target=key, target_shape=shape,
                                          rule=f"layer '{group.name}'",
                                          reason=f"the source has no {role} ({flag}=False): "
                                                 f"{attr} = {value:g}")
    if unit.kind == "layernorm" and group.epsilon is None:
        return  # LayerNormalization from a file without config: nothing to compare with
    src_eps = group.epsilon if group.epsilon is not None else opts.bn_eps
    mod_eps = float(unit.module.eps)  # type: ignore[arg-type]  # BatchNorm's / LayerNorm's float
    key = unit.key("eps")
    if src_eps is None:
        plan.eps_rows.append(PortRow(status="kept", target=key, rule=f"layer '{group.name}'",
                                     reason=f"the source does not store epsilon; module eps "
                                            f"{mod_eps:g} kept (TF-slim and Keras default to "
                                            "0.001: pass bn_eps=)"))
        return
    if math.isclose(src_eps, mod_eps, rel_tol=1e-6, abs_tol=0.0):
        return
    if opts.set_eps:
        plan.eps.append((unit, src_eps))
        plan.eps_rows.append(PortRow(status="filled", target=key, rule=f"layer '{group.name}'",
                                     reason=f"eps {mod_eps:g} -> {src_eps:g} (set_eps=True)"))
    elif opts.allow_eps:
        plan.eps_rows.append(PortRow(status="kept", target=key, rule=f"layer '{group.name}'",
                                     reason=f"eps {mod_eps:g} kept although the source's is "
                                            f"{src_eps:g} (allow_eps_mismatch=True)"))
    else:
        plan.eps_rows.append(PortRow(status="eps", target=key, rule=f"layer '{group.name}'",
                                     reason=f"module eps {mod_eps:g} but the source's "
                                            f"epsilon is {src_eps:g}. Fix: "
                                            "set_eps=True, or build it with eps="
                                            f"{src_eps:g}"))


# -- matching --------------------------------------------------------------------------------

_COMPATIBLE = {
    "conv": ("conv", "depthwise"), "conv?": ("conv", "depthwise", "conv_transpose"),
    "depthwise": ("depthwise", "conv"), "conv_transpose": ("conv_transpose",),
    "dense": ("dense",), "bn": ("bn",), "layernorm": ("layernorm", "bn"),
    "embedding": ("embedding",), "prelu": ("prelu",),
}


def _is_pointwise(u: Unit) -> bool:
    m = u.module
    return u.kind == "conv" and tuple(getattr(m, "kernel_size", ())) in ((1, 1), (1,))


def _by_name(group: SourceGroup, scope: str, units: list[Unit], plan: _Plan,
             paths: dict[str, str]) -> list[Unit] | None:
    """The units `scope` names (see the module docstring), or None."""
    parts = _parts(scope)
    free = [u for u in units if u.path not in plan.claimed]
    kinds = _COMPATIBLE.get(group.kind, ())
    for k in range(len(parts)):
        tails = [parts[k:]]
        if parts[-1] in _BN_ALIASES and len(parts) - k > 1:
            tails += [parts[k:-1] + [a] for a in _BN_ALIASES] + [parts[k:-1]]
        for tail in tails:
            path = paths.get(".".join(tail))
            if path is None:
                continue
            inside = [u for u in free if u.path == path or u.path.startswith(path + ".")]
            if group.kind == "separable":
                dws = [u for u in inside if u.kind == "depthwise"]
                pws = [u for u in inside if _is_pointwise(u)]
                if len(dws) == 1 and len(pws) == 1:
                    return [dws[0], pws[0]]
                continue
            own = [u for u in inside if u.path == path]
            if own and (not kinds or own[0].kind in kinds):
                return own
            fits = [u for u in inside if u.kind in kinds]
            if len(fits) == 1:
                return fits
    return None


def _structural(pending: list[tuple[SourceGroup, str]], units: list[Unit], plan: _Plan,
                opts: _Options, keras_order: bool) -> list[PortRow]:
    """Pair the remaining groups with the remaining units in order; stop at the first misfit."""
    free = [u for u in units if u.path not in plan.claimed and u.path not in plan.direct
            and u.kind != "other"]
    leftover: list[PortRow] = []
    j = 0
    stopped = ""
    for i, (group, rule) in enumerate(pending):
        if stopped:
            leftover += [_var_row(v, status="leftover", reason=f"not matched by name; structural "
                                  f"matching stopped earlier ({stopped})")
                         for v in group.variables]
            continue
        if j >= len(free):
            stopped = f"no module left for layer '{group.name}'"
            leftover += [_var_row(v, status="leftover", reason="no module left to fill "
                                  "(all are filled or matched)") for v in group.variables]
            continue
        if group.kind == "separable":
            cand = free[j:j + 2]
            fits_kind = len(cand) == 2 and cand[0].kind == "depthwise" and _is_pointwise(cand[1])
        else:
            cand = free[j:j + 1]
            fits_kind = cand[0].kind in _COMPATIBLE.get(group.kind, ())
        ok, rows, why = _fit(group, cand, opts) if fits_kind else (False, [], "")
        if not ok:
            what = why or (f"a {group.class_name or group.kind or 'layer'} does not go into "
                           + " + ".join(u.describe() for u in cand))
            stopped = f"at layer '{group.name}' vs module {cand[0].describe()}: {what}"
            leftover += [_var_row(v, status="leftover",
                                  reason=f"structural matching stopped here: {what}")
                         for v in group.variables]
            continue
        order = "model.layers order" if keras_order else "file order"
        pos = f"[{group.index}]" if group.index is not None else f" #{i}"
        text = f"structure: {order}{pos} -> module #{units.index(cand[0])}"
        _commit_group(plan, group, cand, (rule + "; " if rule else "") + text, rows, opts)
        j += len(cand)
    return leftover


def port_weights(source: Any, torch_module: nn.Module,
                 mapping: Mapping[str, str] | Sequence[tuple[str, str]] | None = None, *,
                 strict: bool = True, flip_kernels: bool = False, set_eps: bool = False,
                 allow_eps_mismatch: bool = False, bn_eps: float | None = None,
                 flatten_shapes: Mapping[str, Sequence[int]] | None = None,
                 sample_input: Any = None, by_name: bool = True,
                 by_structure: bool = True, check_settings: bool = True) -> PortReport:
    """Copy a TF / Keras file's variables into `torch_module` (see the module docstring).

    Args:
        source: a path (`.h5`, `.keras`, a checkpoint prefix or folder), a WeightSource, or a
            dict name -> array (a plain checkpoint's names).
        torch_module: the PyTorch twin; changed only when the port succeeds.
        mapping: explicit rename rules `{regex: replacement}` (or pairs), applied in order.
        strict: raise PortError on any leftover variable, unfilled parameter, shape mismatch
            or epsilon mismatch (default). False ports what fits and reports the rest.
        flip_kernels: reverse conv kernels' spatial axes (Theano-style true convolution).
        set_eps: set each BatchNorm's eps to the source's epsilon; `allow_eps_mismatch` keeps
            a different one (reported); `bn_eps`: the epsilon of a file that stores none.
        flatten_shapes / sample_input: where the Dense row re-order after a Flatten gets the
            NHWC map's (H, W, C) (see the module docstring).
        by_name / by_structure: turn the name or the structure pass off.
        check_settings: compare each Keras layer's config (strides, dilation, groups, padding,
            output_padding, BatchNorm axis) with the torch module it fills (`settings`); a
            difference is a `setting` problem. False skips it (a twin that, say, permutes).
    """
    if not isinstance(torch_module, nn.Module):
        raise ConfigError(f"port_weights: the target must be a torch.nn.Module, not "
                          f"{type(torch_module).__name__}")
    src = as_source(source)
    rules = Rules(mapping)
    groups, ignored = group_source(src)
    units = torch_units(torch_module)
    module_name = type(torch_module).__name__
    report = PortReport(source=str(src.path), module=module_name)
    by_unit, by_layer, flat_notes = flatten_shapes_for(torch_module, groups, units,
                                                       flatten_shapes, sample_input)
    opts = _Options(flip_kernels, set_eps, allow_eps_mismatch, bn_eps, by_unit, by_layer,
                    check_settings, any(g.config.get("data_format") == "channels_first"
                                        for g in groups))
    report.notes += flat_notes
    by_key = {key: (u, attr) for u in units for attr, (key, _) in u.slots.items()}
    paths = {".".join(_parts(p)): p for p, _ in torch_module.named_modules() if p}
    plan = _Plan()
    names_ok = by_name and src.names_from != "positions"
    if by_name and not names_ok:
        report.notes.append("the file keeps no user layer names (names_from=positions): layers "
                            "are matched by rules and by structure only")

    # 1. explicit rules
    pending: list[tuple[SourceGroup, str, bool]] = []  # group, rule text, renamed by a rule
    for g in groups:
        subgroups: dict[str, SourceGroup] = {}
        sub_rules: dict[str, list[str]] = {}
        for v, role in zip(g.variables, g.roles):
            canon = f"{g.name}/{role}" if g.keras and role else clean_name(v.name)
            new, used = rules.rename(canon)
            if not used and canon != v.name:
                new, used = rules.rename(v.name)
            rule = "rule " + " + ".join(f"r'{u}'" for u in used) if used else ""
            if used and new in by_key:
                unit, attr = by_key[new]
                inv = {a: r for r, a in ROLE_ATTRS.get(unit.kind, {}).items()}
                vrole = role or role_of_name(v.name) or inv.get(attr, "kernel")
                one = SourceGroup(g.name, g.class_name, g.config, [v], [vrole], g.keras, g.index)
                _, rows, _ = _fit(one, [unit], opts, targets={vrole: (unit, attr)})
                _commit_group(plan, one, [], rule, rows, opts)
                plan.direct.setdefault(unit.path, g.name)
                continue
            if used:
                nrole = role_of_name(new)
                scope = new.rsplit("/", 1)[0] if nrole and "/" in new else new
                srole = nrole or role  # a role the rule's result names wins
            else:
                scope, srole = g.name, role
            sub = subgroups.get(scope)
            if sub is None:
                sub = subgroups[scope] = SourceGroup(scope, g.class_name, g.config, [], [],
                                                     g.keras, g.index)
                sub_rules[scope] = []
            sub.variables.append(v)
            sub.roles.append(srole)
            if rule and rule not in sub_rules[scope]:
                sub_rules[scope].append(rule)
        pending += [(sub, "; ".join(sub_rules[scope]), bool(sub_rules[scope]))
                    for scope, sub in subgroups.items()]

    # 2. names
    rest: list[tuple[SourceGroup, str]] = []
    for g, rule, renamed in pending:
        found = _by_name(g, g.name, units, plan, paths) if (names_ok or renamed) else None
        if found is None:
            if renamed:
                for v in g.variables:
                    plan.var_rows[v.name] = _var_row(v, status="leftover", rule=rule,
                                                     reason=f"renamed to '{g.name}', which "
                                                            "names no free module or key")
            else:
                rest.append((g, rule))
            continue
        _, rows, _ = _fit(g, found, opts)
        text = f"name '{g.name}' -> " + " + ".join(f"'{u.path}'" for u in found)
        _commit_group(plan, g, found, (rule + "; " if rule else "") + text, rows, opts)

    # 3. structure
    if by_structure:
        keras_order = src.layers is not None
        if rest:
            report.notes.append(
                "structural matching followed " + ("Keras's model.layers order" if keras_order
                                                   else "the file's variable order (sorted "
                                                   "names, rarely the model's order)")
                + " against the module's registration order (named_modules)")
        for row in _structural(rest, units, plan, opts, keras_order):
            plan.var_rows[row.variable] = row
    else:
        for g, _ in rest:
            for v in g.variables:
                plan.var_rows[v.name] = _var_row(v, status="leftover",
                                                 reason="no rule or name matched it")

    for v, why in ignored:
        plan.var_rows[v.name] = _var_row(v, status="ignored", reason=why)

    # rows: variables in file order, then the parameters / buffers nothing filled
    order = dict.fromkeys([*src.variables, *(v.name for layer in src.layers or []
                                             for v in layer.variables), *plan.var_rows])
    report.rows = [plan.var_rows[name] for name in order if name in plan.var_rows]
    tensor_ids = {k: id(t) for k, t in [*torch_module.named_parameters(remove_duplicate=False),
                                        *torch_module.named_buffers(remove_duplicate=False)]}
    staged_ids = {tensor_ids[k]: k for k in plan.staged if k in tensor_ids}
    for u in units:
        for attr, (key, shape) in u.slots.items():
            if key in plan.staged and key not in plan.slot_rows:
                continue
            tied = staged_ids.get(tensor_ids.get(key, -1))
            if key in plan.slot_rows:
                report.rows.append(plan.slot_rows[key])
            elif tied is not None:
                report.rows.append(PortRow(status="filled", target=key, target_shape=shape,
                                           reason=f"tied: the same tensor as '{tied}'"))
            elif attr in _KEEP_BUFFERS:
                report.rows.append(PortRow(status="kept", target=key, target_shape=shape,
                                           reason="torch bookkeeping, no TF counterpart"))
            elif key in plan.targeted:
                continue  # its variable's row already says why (shape mismatch)
            else:
                report.rows.append(PortRow(status="missing", target=key, target_shape=shape,
                                           reason=_missing_reason(u, attr, plan)))
    report.rows += plan.eps_rows + plan.setting_rows

    if report.problems and strict:
        raise PortError(report)
    _apply(torch_module, plan)
    report.applied = True
    return report


def _missing_reason(u: Unit, attr: str, plan: _Plan) -> str:
    owner = plan.claimed.get(u.path) or plan.direct.get(u.path)
    if owner is not None:
        if attr == "bias" and u.kind in ("conv", "depthwise", "conv_transpose", "dense"):
            # a conv before BatchNorm has none: a random bias left in would shift every output
            return (f"its layer '{owner}' has no bias (use_bias=False). Fix: build "
                    f"'{u.path}' with bias=False")
        return f"its layer '{owner}' has no variable for {attr}"
    if u.kind == "other":
        return (f"a {type(u.module).__name__} has no built-in TF counterpart. Fix: map it with "
                "mapping={regex: key}")
    return "no variable matched it by rule, name or structure"


def _apply(module: nn.Module, plan: _Plan) -> None:
    """Copy every staged value in (all shapes were checked: nothing here can half-fail)."""
    state = dict(module.named_parameters(remove_duplicate=False)) | \
        dict(module.named_buffers(remove_duplicate=False))  # tied tensors under every key
    with torch.no_grad():
        for key, arr in plan.staged.items():
            target = state[key]
            # through float32 (float64 for a double target): exact for float16 / bfloat16,
            # then torch rounds once to the target's dtype (torch.bfloat16 has no numpy twin)
            wide = np.float64 if target.dtype == torch.float64 else np.float32
            value = np.ascontiguousarray(arr, dtype=wide if target.is_floating_point()
                                         else np.int64)
            if not value.flags.writeable:  # a read-only view of a mapped checkpoint shard
                value = value.copy()
            target.copy_(torch.from_numpy(value).to(target.dtype))
    for unit, eps in plan.eps:
        setattr(unit.module, "eps", eps)  # noqa: B010  # nn.Module's __setattr__ types
