"""Keras layer settings a twin's torch module must share, checked when the file keeps configs.

The weights of a conv fit its torch module whatever the stride or padding; the outputs do not.
When the source knows a layer's config (`.keras`, Keras 2 `.h5`, a live model), each pair is
checked for what the torch module fixes at construction (a setting the config leaves out is
not compared) (a twin's padding done in `forward`
before a padding-0 conv, such as `SamePad2d`, is out of sight and taken on trust):

- convolutions: `strides`, `dilation_rate`, `groups`; `padding`: a `modelport.tf.twins` twin's
  own `tf_padding`, else torch's `padding=`: "valid" needs 0, "same" 0 (padded before) or the
  symmetric `(k_eff - 1) / 2` at stride 1 (the only case where TF's rule is symmetric),
  "causal" 0; a non-zero padding must pad zeros (`padding_mode="zeros"`);
- transposed convolutions: Keras's output size and crop (`twins.keras_transpose_size`, with
  `output_padding`) against a twin's `tf_padding` / `tf_output_padding`, or against a plain
  `nn.ConvTransposeNd`'s `padding` / `output_padding`, whose crop is symmetric: both rules are
  the same for every input size or for none, so the check is exact;
- BatchNormalization: `axis` must be the channel axis (`-1` channels last, `1` channels first)
  of the tensor rank the torch BatchNorm takes;
- LayerNormalization: `rms_scaling=True` has no nn.LayerNorm form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from modelport.tf.mapping import SourceGroup
from modelport.tf.twins import keras_transpose_size
from modelport.tf.units import Unit

__all__ = ["setting_problems"]

_FIX_CONV = "Fix: build it with the Keras layer's settings (modelport.tf.twins pads as TF does)"


def _tuple(value: Any, n: int) -> tuple[int, ...] | None:
    """A config entry as n ints (an int repeated; None when absent or not numbers)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == n and \
            all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    return None


def _conv(group: SourceGroup, unit: Unit, role: str) -> list[str]:
    m = unit.module
    assert isinstance(m, nn.modules.conv._ConvNd)
    cfg = group.config
    n = len(m.kernel_size)
    name, what = group.name, unit.describe()
    problems = []
    pointwise = role == "pointwise"  # a separable layer's 1x1 half: stride 1, no padding
    strides = (1,) * n if pointwise else _tuple(cfg.get("strides"), n)
    dilation = (1,) * n if pointwise else _tuple(cfg.get("dilation_rate"), n)
    if strides is not None and tuple(m.stride) != strides:
        problems.append(f"layer '{name}' has strides {strides}, {what} stride "
                        f"{tuple(m.stride)}. {_FIX_CONV}")
    if dilation is not None and tuple(m.dilation) != dilation:
        problems.append(f"layer '{name}' has dilation_rate {dilation}, {what} dilation "
                        f"{tuple(m.dilation)}. {_FIX_CONV}")
    groups = cfg.get("groups")
    if unit.kind == "conv" and not pointwise and isinstance(groups, int) and m.groups != groups:
        problems.append(f"layer '{name}' has groups={groups}, {what} groups={m.groups}. "
                        f"{_FIX_CONV}")
    padding = "valid" if pointwise else str(cfg.get("padding", "")).lower()
    if not padding:  # a config without it (hand-made): nothing to compare
        return problems
    if m.transposed:
        return problems + _transpose(group, unit, padding, n)
    own = getattr(m, "tf_padding", None)
    if isinstance(own, str):
        if own != padding:
            problems.append(f"layer '{name}' pads '{padding}', {what} pads '{own}'. Fix: "
                            f"padding='{padding}'")
        return problems
    tp = m.padding
    k_eff = [(k - 1) * d + 1 for k, d in zip(m.kernel_size, m.dilation)]
    zero = tp == "valid" or (not isinstance(tp, str) and not any(tp))
    if padding == "same":
        symmetric = tp == "same" or (not isinstance(tp, str) and all(s == 1 for s in m.stride)
                                     and all(2 * p == k - 1 for p, k in zip(tp, k_eff)))
        if not (zero or symmetric):
            problems.append(f"layer '{name}' pads 'same' as TF (the odd element after, from the "
                            f"input size), {what} pads {tp} on both sides at stride "
                            f"{tuple(m.stride)}: not the same. Fix: padding=0 after "
                            "modelport.tf.SamePad2d, or a modelport.tf.twins ConvNdSame")
    elif not zero:  # valid, causal
        fix = "padding=0 after F.pad(x, ((k - 1) * dilation, 0)), or " \
              "twins.Conv1dSame(..., padding='causal')" if padding == "causal" else "padding=0"
        problems.append(f"layer '{name}' pads '{padding}', {what} pads {tp}. Fix: {fix}")
    if not zero and m.padding_mode != "zeros":
        problems.append(f"layer '{name}' pads zeros, {what} pads '{m.padding_mode}'. Fix: "
                        "padding_mode='zeros'")
    return problems


def _transpose(group: SourceGroup, unit: Unit, padding: str, n: int) -> list[str]:
    m = unit.module
    assert isinstance(m, nn.modules.conv._ConvTransposeNd)
    name, what = group.name, unit.describe()
    raw = group.config.get("output_padding")
    keras_op = None if raw is None else _tuple(raw, n)
    if raw is not None and keras_op is None:
        return [f"layer '{name}': output_padding {raw!r} is not {n} integers"]
    setting = f"padding='{padding}'" + ("" if keras_op is None else
                                        f", output_padding={keras_op}")
    own = getattr(m, "tf_padding", None)
    if isinstance(own, str):
        ours = getattr(m, "tf_output_padding", None)
        if own != padding or ours != keras_op:
            mine = f"padding='{own}'" + ("" if ours is None else f", output_padding={ours}")
            return [f"layer '{name}' has {setting}, {what} {mine}. Fix: give it {setting}"]
        return []
    if padding not in ("same", "valid"):
        return [f"layer '{name}' pads '{padding}': a transposed conv pads 'same' or 'valid'"]
    if m.padding_mode != "zeros":
        return [f"{what} pads '{m.padding_mode}'. Fix: padding_mode='zeros'"]
    tp = m.padding if not isinstance(m.padding, str) else (0,) * n
    for axis in range(n):
        k, s, d = m.kernel_size[axis], m.stride[axis], m.dilation[axis]
        op = None if keras_op is None else keras_op[axis]
        # one input element: the length past (n - 1) * s and the crop, both independent of n
        length, before = keras_transpose_size(1, k, s, d, padding, op)
        k_eff = (k - 1) * d + 1
        p, op_t = tp[axis], m.output_padding[axis]
        if (p, k_eff - 2 * p + op_t) != (before, length):
            return [f"layer '{name}' ({setting}) crops {before} before and outputs "
                    f"(n-1)*{s}+{length} on axis {axis}; {what} with padding={tuple(tp)}, "
                    f"output_padding={tuple(m.output_padding)} crops {p} and outputs "
                    f"(n-1)*{s}+{k_eff - 2 * p + op_t}. Fix: use modelport.tf.twins."
                    f"ConvTranspose{n}dSame(..., {setting})"]
    return []


def _batchnorm(group: SourceGroup, unit: Unit, channels_first: bool) -> list[str]:
    axis = group.config.get("axis", -1)  # Keras's default
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if not isinstance(axis, int):
        return [f"layer '{group.name}' normalizes axes {axis}: {unit.describe()} normalizes one "
                "channel axis. Fix: check_settings=False after checking the twin by hand"]
    m = unit.module
    ranks = (2, 3) if isinstance(m, nn.BatchNorm1d) else (4,) if isinstance(m, nn.BatchNorm2d) \
        else (5,) if isinstance(m, nn.BatchNorm3d) else (2, 3, 4, 5)
    fits = [r for r in ranks if (axis % r) == (1 if channels_first or r == 2 else r - 1)]
    if fits:
        return []
    layout = "channels-first" if channels_first else "channels-last"
    return [f"layer '{group.name}' normalizes axis {axis}, not the channel axis of the "
            f"{layout} {'/'.join(map(str, ranks))}-D tensor {unit.describe()} takes (Keras "
            f"axis {1 if channels_first else -1}). Fix: a twin that moves that axis to dim 1 "
            "around its BatchNorm, then check_settings=False"]


def setting_problems(group: SourceGroup, units: list[Unit], channels_first: bool) -> list[str]:
    """What in `group`'s Keras config the torch `units` it fills do not share (see the module
    docstring); nothing for a group without a config."""
    if not group.config:
        return []
    problems: list[str] = []
    for i, unit in enumerate(units):
        if isinstance(unit.module, nn.modules.conv._ConvNd):
            role = "pointwise" if len(units) == 2 and i == 1 else "conv"
            problems += _conv(group, unit, role)
        elif unit.kind == "bn" and group.kind == "bn":
            problems += _batchnorm(group, unit, channels_first)
        elif unit.kind == "layernorm" and group.config.get("rms_scaling"):
            problems.append(f"layer '{group.name}' has rms_scaling=True (no mean subtracted): "
                            f"{unit.describe()} is not that. Fix: an RMS norm module filled by "
                            "a rule (mapping={regex: key})")
    return problems
