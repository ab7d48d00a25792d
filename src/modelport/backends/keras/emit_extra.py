"""Keras emitters of Caffe's less common layer types (see backends/keras/registry.py), and the
clear refusals for what has no faithful Keras form.

Like emit_core, each emitter reads the converted torch module (modelport's layers/ decoded
Caffe's parameters and float32 constants already) and writes the custom layers of
runtime_extra.py (or standard Keras layers where those compute Caffe's function exactly).
Layouts follow the registry's rule: element-wise layers keep their bottom's layout; layers
whose result depends on Caffe's axis order (ArgMax, Reduction, Embed, Permute) permute their
input to Caffe order inside the layer and give tops of 4 or more axes channels-last.

This module loads after emit_core (emit_*.py in name order) so its registrations are tried
first: every `when` here accepts only forms emit_core does not take.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.backends.keras.registry import (
    CAFFE,
    CHANNELS_LAST,
    EmitContext,
    KerasEmitted,
    KerasTensor,
    lit,
    register_keras,
    to_numpy,
)
from modelport.ir import Layer
from modelport.layers.registry import layer_types
from modelport.schema import caffe_pb2

RP = caffe_pb2.ReductionParameter
PP = caffe_pb2.PoolingParameter  # SPP's levels


def _new_top(ctx: EmitContext) -> KerasTensor:
    """The layer's one top as a new tensor: channels-last from 4 axes on (as inputs), else in
    Caffe order."""
    shape = ctx.top_shapes[0]
    return KerasTensor(ctx.top_var(0), shape, CHANNELS_LAST if len(shape) >= 4 else CAFFE)


def _to_caffe(t: KerasTensor) -> list[int] | None:
    """The transpose that puts `t`'s Keras axes in Caffe's order (None: already are)."""
    if t.layout == CAFFE or t.rank < 3:
        return None
    return [t.perm.index(a) for a in range(t.rank)]


def _to_keras(t: KerasTensor) -> list[int] | None:
    """The transpose that turns a Caffe-order value of `t` into its Keras layout."""
    if t.layout == CAFFE or t.rank < 3:
        return None
    return list(t.perm)


def _one(ctx: EmitContext, call: str, inputs: str, top: KerasTensor,
         weights: list[np.ndarray] | None = None, runtime: tuple[str, ...] = ()) -> KerasEmitted:
    """`top = call(inputs)` for the layer's one top."""
    return ctx.emitted([f"{top.var} = {call}({inputs})"], [top], weights or [], runtime)


def _same_layout_top(ctx: EmitContext, call: str, runtime: str,
                     weights: list[np.ndarray] | None = None) -> KerasEmitted:
    """An element-wise layer: one bottom, one top of the same shape and layout."""
    b = ctx.bottoms[0]
    top = KerasTensor(ctx.top_var(0), ctx.top_shapes[0], b.layout)
    return _one(ctx, call, b.var, top, weights, (runtime,))


def _plain_same_layout_top(ctx: EmitContext, runtime: str, *args: str) -> KerasEmitted:
    """An element-wise layer whose Keras layer is `runtime(*args, name=...)`, no weights."""
    return _same_layout_top(ctx, f"{runtime}({', '.join([*args, ctx.name_arg])})", runtime)


# ---------------------------------------------------------------------------------------------
# Element-wise activations


@register_keras("PReLU")
def emit_prelu(ctx: EmitContext) -> KerasEmitted:
    """Caffe PReLU: CaffePReLU with one slope (channel_shared) or one per channel, on the
    Keras axis holding Caffe's axis 1."""
    m = ctx.module
    b = ctx.bottoms[0]
    shared = bool(m.channel_shared)
    slope = to_numpy(m.weight).reshape(-1)  # one value when shared
    call = (f"CaffePReLU(channel_shared={lit(shared)}, channel_axis={lit(b.keras_axis(1))}, "
            f"{ctx.name_arg})")
    return _same_layout_top(ctx, call, "CaffePReLU", [slope])


@register_keras("ELU")
def emit_elu(ctx: EmitContext) -> KerasEmitted:
    """Caffe ELU: CaffeELU(alpha) (Caffe's max/min form, not Keras's ELU's where)."""
    return _plain_same_layout_top(ctx, "CaffeELU", lit(float(ctx.module.alpha)))


@register_keras("AbsVal")
def emit_absval(ctx: EmitContext) -> KerasEmitted:
    """Caffe AbsVal: CaffeAbsVal."""
    return _plain_same_layout_top(ctx, "CaffeAbsVal")


@register_keras("BNLL")
def emit_bnll(ctx: EmitContext) -> KerasEmitted:
    """Caffe BNLL: CaffeBNLL (Caffe's two overflow-free branches)."""
    return _plain_same_layout_top(ctx, "CaffeBNLL")


@register_keras("Power")
def emit_power(ctx: EmitContext) -> KerasEmitted:
    """Caffe Power: CaffePower(power, scale, shift), with Caffe's constant form when
    power * scale is 0 (the converter's float32 constant)."""
    m = ctx.module
    constant = None if m.constant is None else float(m.constant)
    return _plain_same_layout_top(ctx, "CaffePower", lit(float(m.power)), lit(float(m.scale)),
                                  lit(float(m.shift)), f"constant={lit(constant)}")


@register_keras("Exp")
def emit_exp(ctx: EmitContext) -> KerasEmitted:
    """Caffe Exp: CaffeExp(inner, outer) = outer * exp(inner * x), the converter's factors
    (inner = ln(base) * scale, outer = base ^ shift; base -1 is e)."""
    m = ctx.module
    return _plain_same_layout_top(ctx, "CaffeExp", lit(float(m.inner_scale)),
                                  lit(float(m.outer_scale)))


@register_keras("Log")
def emit_log(ctx: EmitContext) -> KerasEmitted:
    """Caffe Log: CaffeLog(scale, shift, base_scale) = ln(shift + scale * x) * base_scale,
    base_scale = 1 / ln(base) as Caffe computes it (base -1 is e)."""
    m = ctx.module
    return _plain_same_layout_top(ctx, "CaffeLog", lit(float(m.scale)), lit(float(m.shift)),
                                  lit(float(m.base_scale)))


@register_keras("Threshold")
def emit_threshold(ctx: EmitContext) -> KerasEmitted:
    """Caffe Threshold: CaffeThreshold (1 where x > threshold, strictly)."""
    return _plain_same_layout_top(ctx, "CaffeThreshold", lit(float(ctx.module.threshold)))


@register_keras("Clip")
def emit_clip(ctx: EmitContext) -> KerasEmitted:
    """Caffe Clip: CaffeClip(min, max) in std::max(min, std::min(x, max)) order."""
    m = ctx.module
    return _plain_same_layout_top(ctx, "CaffeClip", lit(float(m.low)), lit(float(m.high)))


@register_keras("Swish")
def emit_swish(ctx: EmitContext) -> KerasEmitted:
    """Caffe Swish: CaffeSwish(beta) = x * sigmoid(beta * x)."""
    return _plain_same_layout_top(ctx, "CaffeSwish", lit(float(ctx.module.beta)))


# ---------------------------------------------------------------------------------------------
# MVN, Normalize


@register_keras("MVN")
def emit_mvn(ctx: EmitContext) -> KerasEmitted:
    """Caffe MVN: CaffeMVN over the Keras axes holding Caffe's axes 2.. (per sample and
    channel) or 1.. (across_channels), eps added to the standard deviation."""
    m = ctx.module
    b = ctx.bottoms[0]
    first = 1 if m.across_channels else 2
    axes = sorted(b.keras_axis(a) for a in range(first, b.rank))
    return _plain_same_layout_top(ctx, "CaffeMVN", lit(axes),
                                  f"normalize_variance={lit(bool(m.normalize_variance))}",
                                  f"eps={lit(float(m.eps))}")


@register_keras("Normalize")
def emit_normalize(ctx: EmitContext) -> KerasEmitted:
    """SSD Normalize: CaffeNormalize (norm over each sample, or over the channels at each
    position; one scale or one per channel on the Keras axis of Caffe's axis 1)."""
    m = ctx.module
    b = ctx.bottoms[0]
    scale = to_numpy(m.weight).reshape(-1)
    shared = scale.size == 1  # one channel unshared is the same function
    call = (f"CaffeNormalize(across_spatial={lit(bool(m.across_spatial))}, "
            f"channel_shared={lit(bool(shared))}, eps={lit(float(m.eps))}, "
            f"channel_axis={lit(b.keras_axis(1))}, {ctx.name_arg})")
    return _same_layout_top(ctx, call, "CaffeNormalize", [scale])


# ---------------------------------------------------------------------------------------------
# Embed, Tile, Reduction, ArgMax


@register_keras("Embed")
def emit_embed(ctx: EmitContext) -> KerasEmitted:
    """Caffe Embed: CaffeEmbed (table input_dim x num_output, optional bias) on the bottom in
    Caffe order; the top's new last axis is num_output."""
    m = ctx.module
    b = ctx.as_layout(ctx.bottoms[0], CAFFE)
    table = to_numpy(m.weight)
    top = _new_top(ctx)
    weights = [table] + ([to_numpy(m.bias)] if m.bias is not None else [])
    call = (f"CaffeEmbed({lit(int(table.shape[0]))}, {lit(int(table.shape[1]))}, "
            f"use_bias={lit(m.bias is not None)}, to_keras={lit(_to_keras(top))}, "
            f"{ctx.name_arg})")
    return _one(ctx, call, b.var, top, weights, ("CaffeEmbed",))


@register_keras("Tile")
def emit_tile(ctx: EmitContext) -> KerasEmitted:
    """Caffe Tile: CaffeTile on the Keras axis of Caffe's `axis` (tiling one axis is the same
    in every layout)."""
    m = ctx.module
    b = ctx.bottoms[0]
    axis = b.keras_axis(int(m.axis))
    if axis == 0:
        raise ctx.unsupported("tiling the batch axis (a Keras model keeps samples apart)",
                              "tile along another axis")
    top = KerasTensor(ctx.top_var(0), ctx.top_shapes[0], b.layout)
    call = f"CaffeTile({lit(axis)}, {lit(int(m.tiles))}, {ctx.name_arg})"
    return _one(ctx, call, b.var, top, None, ("CaffeTile",))


@register_keras("Reduction")
def emit_reduction(ctx: EmitContext) -> KerasEmitted:
    """Caffe Reduction: CaffeReduction on the bottom in Caffe order (the kept axes are Caffe's
    leading ones; from axis 0 the top is one number for the whole batch, a 0-axis blob)."""
    m = ctx.module
    b = ctx.bottoms[0]
    axis = int(m.axis)  # 0 (Caffe's default) sums the whole batch into one number, as Caffe
    top = _new_top(ctx)
    op = RP.ReductionOp.Name(int(m.operation))
    call = (f"CaffeReduction({lit(op)}, {lit(axis)}, {lit(float(m.coeff))}, "
            f"to_caffe={lit(_to_caffe(b))}, to_keras={lit(_to_keras(top))}, {ctx.name_arg})")
    return _one(ctx, call, b.var, top, None, ("CaffeReduction",))


@register_keras("ArgMax")
def emit_argmax(ctx: EmitContext) -> KerasEmitted:
    """Caffe ArgMax: CaffeArgMax (top_k, out_max_val, axis; ties to the higher index) on the
    bottom in Caffe order (the flattened indices are Caffe's)."""
    m = ctx.module
    b = ctx.bottoms[0]
    axis = None if m.axis is None else int(m.axis)  # 0: along the batch, as Caffe
    top = _new_top(ctx)
    call = (f"CaffeArgMax({lit(int(m.top_k))}, out_max_val={lit(bool(m.out_max_val))}, "
            f"axis={lit(axis)}, out_rank={lit(int(m.out_ndim))}, to_caffe={lit(_to_caffe(b))}, "
            f"to_keras={lit(_to_keras(top))}, {ctx.name_arg})")
    return _one(ctx, call, b.var, top, None, ("CaffeArgMax",))


# ---------------------------------------------------------------------------------------------
# Crop, Permute, Silence


@register_keras("Crop")
def emit_crop(ctx: EmitContext) -> KerasEmitted:
    """Caffe Crop: CaffeCrop with the offsets and the reference's sizes on the Keras axes of
    Caffe's cropped axes (earlier axes whole); the reference input is the graph edge."""
    m = ctx.module
    x, ref = ctx.bottoms
    begin = [0] * x.rank
    size = [-1] * x.rank
    for i, offset in enumerate(m.offsets):
        caffe_axis = int(m.start) + i
        k = x.keras_axis(caffe_axis)
        begin[k] = int(offset)
        size[k] = int(ref.caffe_shape[caffe_axis])
    if begin[0] or size[0] != -1:
        if begin[0] or size[0] != x.caffe_shape[0]:
            raise ctx.unsupported("cropping the batch axis (a Keras model keeps samples "
                                  "apart)", "crop from axis 1 on")
        size[0] = -1
    top = KerasTensor(ctx.top_var(0), ctx.top_shapes[0], x.layout)
    call = f"CaffeCrop({lit(begin)}, {lit(size)}, {ctx.name_arg})"
    return _one(ctx, call, f"[{x.var}, {ref.var}]", top, None, ("CaffeCrop",))


@register_keras("Permute")
def emit_permute(ctx: EmitContext) -> KerasEmitted:
    """SSD Permute: one CaffePermute transpose, Caffe's order composed with the Keras layouts
    of the bottom and the top (top axis k holds Caffe top axis top.perm[k], which is Caffe
    bottom axis order[top.perm[k]])."""
    order = tuple(int(a) for a in ctx.module.order)
    if order[0] != 0:
        raise ctx.unsupported(f"Permute order {list(order)}, which moves the batch axis (a "
                              "Keras model keeps samples apart)", "keep axis 0 first")
    b = ctx.bottoms[0]
    top = _new_top(ctx)
    perm = [b.perm.index(order[a]) for a in top.perm]
    if perm == list(range(len(perm))):
        return _one(ctx, f"keras.layers.Identity({ctx.name_arg})", b.var, top)
    return _one(ctx, f"CaffePermute({lit(perm)}, {ctx.name_arg})", b.var, top, None,
                ("CaffePermute",))


@register_keras("Silence")
def emit_silence(ctx: EmitContext) -> KerasEmitted:
    """Caffe Silence: no tops, nothing to write."""
    return KerasEmitted([], [], layer_name=None)


# ---------------------------------------------------------------------------------------------
# Deconvolution, N-D Convolution


@register_keras("Deconvolution", when=lambda layer, m: getattr(m, "axis", 0) == 1)
def emit_deconvolution(ctx: EmitContext) -> KerasEmitted:
    """Caffe Deconvolution (1 to 3 spatial axes, axis 1): CaffeDeconvolution channels-last,
    output (in - 1) * stride - 2 * pad + dilation * (k - 1) + 1 per axis, `group` groups;
    weight C x num_output/group x k... -> kernel (*k, num_output/group, C)."""
    m = ctx.module
    x = ctx.as_layout(ctx.bottoms[0], CHANNELS_LAST)
    weight = to_numpy(m.weight)
    nsp = weight.ndim - 2
    kernel = np.transpose(weight, (*range(2, weight.ndim), 1, 0))
    filters = int(weight.shape[1]) * int(m.group)
    weights = [kernel] + ([to_numpy(m.bias)] if m.bias is not None else [])
    call = (f"CaffeDeconvolution({lit(filters)}, {lit(tuple(int(k) for k in weight.shape[2:]))}, "
            f"{lit(tuple(int(s) for s in m.stride))}, {lit(tuple(int(p) for p in m.pad))}, "
            f"{lit(tuple(int(d) for d in m.dilation))}, group={lit(int(m.group))}, "
            f"use_bias={lit(m.bias is not None)}, {ctx.name_arg})")
    assert len(m.stride) == nsp
    top = KerasTensor(ctx.top_var(0), ctx.top_shapes[0], CHANNELS_LAST)
    return _one(ctx, call, x.var, top, weights, ("CaffeDeconvolution",))


def _is_conv_nd(layer: Layer, m: Any) -> bool:
    """A 1-D or 3-D (axis 1) Convolution: emit_core takes the 2-D ones."""
    return (getattr(m, "axis", None) == 1 and len(getattr(m, "stride", ())) in (1, 3)
            and not getattr(m, "transposed", True))


@register_keras("Convolution", when=_is_conv_nd)
def emit_convolution_nd(ctx: EmitContext) -> KerasEmitted:
    """Caffe N-D Convolution with 1 or 3 spatial axes: ZeroPadding1D/3D (Caffe's symmetric
    pad), then Conv1D/Conv3D 'valid' channels-last with strides and dilation_rate; grouped, a
    CaffeGroupConvolution (one convolution per group); weight O x I/g x k... -> kernel
    (*k, I/g, O)."""
    m = ctx.module
    x = ctx.as_layout(ctx.bottoms[0], CHANNELS_LAST)
    weight = to_numpy(m.weight)
    nsp = weight.ndim - 2
    stride, dilation, pad = (tuple(int(v) for v in vals) for vals in (m.stride, m.dilation, m.pad))
    if max(stride) > 1 and max(dilation) > 1:
        raise ctx.unsupported(f"stride {stride} with dilation {dilation} (Keras convolutions "
                              "take strides > 1 or dilation > 1, not both)",
                              "export with stride 1 or without dilation")
    top = KerasTensor(ctx.top_var(0), ctx.top_shapes[0], CHANNELS_LAST)
    weights = [np.transpose(weight, (*range(2, weight.ndim), 1, 0))]
    if m.bias is not None:
        weights.append(to_numpy(m.bias))
    if m.group != 1:  # one convolution per group: TFLite's CONV_3D has no groups
        call = (f"CaffeGroupConvolution({lit(int(weight.shape[0]))}, "
                f"{lit(tuple(int(k) for k in weight.shape[2:]))}, {lit(stride)}, {lit(pad)}, "
                f"{lit(dilation)}, group={lit(int(m.group))}, use_bias={lit(m.bias is not None)}"
                f", {ctx.name_arg})")
        return _one(ctx, call, x.var, top, weights, ("CaffeGroupConvolution",))
    source = x.var
    if any(pad):
        widths = pad[0] if nsp == 1 else tuple((p, p) for p in pad)
        source = (f"keras.layers.ZeroPadding{nsp}D({lit(widths)}, "
                  f"name={lit(ctx.helper_name('pad'))})({x.var})")
    kwargs = [f"strides={lit(stride)}", "padding='valid'"]
    if max(dilation) > 1:
        kwargs.append(f"dilation_rate={lit(dilation)}")
    if m.bias is None:
        kwargs.append("use_bias=False")
    call = (f"keras.layers.Conv{nsp}D({lit(int(weight.shape[0]))}, "
            f"{lit(tuple(int(k) for k in weight.shape[2:]))}, {', '.join(kwargs)}, "
            f"{ctx.name_arg})")
    return _one(ctx, call, source, top, weights)


# ---------------------------------------------------------------------------------------------
# SPP


@register_keras("SPP")
def emit_spp(ctx: EmitContext) -> KerasEmitted:
    """Caffe SPP: per pyramid level a CaffePool2D (kernel ceil(in / 2^l), Caffe's pad, stride =
    kernel), each flattened in Caffe's C x H x W order, then concatenated."""
    m = ctx.module
    x = ctx.as_layout(ctx.bottoms[0], CHANNELS_LAST)
    lines: list[str] = []
    flats: list[str] = []
    levels = list(m.levels)
    top = KerasTensor(ctx.top_var(0), ctx.top_shapes[0], CAFFE)
    for i, level in enumerate(levels):
        method = "MAX" if level.method == PP.MAX else "AVE"  # the converter refuses STOCHASTIC
        pooled = ctx.temp_var(f"level{i}")
        lines.append(f"{pooled} = CaffePool2D({lit(method)}, {lit(tuple(level.kernel))}, "
                     f"{lit(tuple(level.stride))}, {lit(tuple(level.pad))}, ceil=True, "
                     f"name={lit(ctx.helper_name(f'level{i}'))})({x.var})")
        caffe_order = ctx.temp_var(f"level{i}_nchw")
        lines.append(f"{caffe_order} = keras.layers.Permute((3, 1, 2), "
                     f"name={lit(ctx.helper_name(f'level{i}_to_caffe'))})({pooled})")
        last = len(levels) == 1
        name = ctx.name_arg if last else f"name={lit(ctx.helper_name(f'level{i}_flat'))}"
        flat = top.var if last else ctx.temp_var(f"level{i}_flat")
        lines.append(f"{flat} = keras.layers.Flatten({name})({caffe_order})")
        flats.append(flat)
    if len(levels) > 1:
        lines.append(f"{top.var} = keras.layers.Concatenate(axis=1, {ctx.name_arg})"
                     f"([{', '.join(flats)}])")
    return ctx.emitted(lines, [top], [], ("CaffePool2D",))


# ---------------------------------------------------------------------------------------------
# SSD: PriorBox, DetectionOutput


def _height_width(shape: tuple[int, ...]) -> tuple[int, int]:
    """Caffe's legacy height()/width(): axes 2 and 3, 1 where the blob has fewer axes."""
    return (shape[2] if len(shape) > 2 else 1, shape[3] if len(shape) > 3 else 1)


@register_keras("PriorBox")
def emit_prior_box(ctx: EmitContext) -> KerasEmitted:
    """SSD PriorBox: CaffePriorBox, a constant 1 x 2 x (H*W*P*4) top from the feature map's and
    the image's static sizes (img_size/img_h/img_w, else the second bottom's) and the
    converter's decoded parameters (aspect ratios expanded with flip, min/max sizes as ints)."""
    m = ctx.module
    layer_hw = _height_width(ctx.bottoms[0].caffe_shape)
    if m.img_hw is not None:
        image_hw = tuple(int(v) for v in m.img_hw)
    else:
        image_hw = _height_width(ctx.bottoms[1].caffe_shape)
    step = None if m.step_hw is None else [float(v) for v in m.step_hw]
    call = (f"CaffePriorBox({lit(list(layer_hw))}, {lit(list(image_hw))}, "
            f"min_sizes={lit([float(v) for v in m.min_sizes])}, "
            f"max_sizes={lit([float(v) for v in m.max_sizes])}, "
            f"aspect_ratios={lit([float(v) for v in m.aspect_ratios])}, clip={lit(bool(m.clip))}, "
            f"variances={lit([float(v) for v in m.variances])}, step_hw={lit(step)}, "
            f"offset={lit(float(m.offset))}, {ctx.name_arg})")
    inputs = "[" + ", ".join(b.var for b in ctx.bottoms) + "]"
    top = KerasTensor(ctx.top_var(0), ctx.top_shapes[0], CAFFE)
    return _one(ctx, call, inputs, top, None, ("CaffePriorBox",))


@register_keras("DetectionOutput")
def emit_detection_output(ctx: EmitContext) -> KerasEmitted:
    """SSD DetectionOutput: refused. Its top has one row per kept detection (a data-dependent
    size) and its greedy per-class NMS keeps a box only after comparing it with every box kept
    before it (with an adaptive threshold); Caffe's tie order needs a stable sort, which
    keras.ops does not promise on every backend (TensorFlow's argsort is unstable), and
    padding the rows to a fixed size would change Caffe's output."""
    raise ctx.unsupported(
        "a top with one row per kept detection: Caffe's greedy NMS is a sequential, "
        "data-dependent loop and the row count depends on the data, which this export does "
        "not write with keras.ops (a padded fixed-size top would not be Caffe's output)",
        "remove the DetectionOutput layer from the deploy prototxt so that its bottoms (loc, "
        "conf, priors) are the outputs, export that, and run DetectionOutput on them with "
        "modelport's model.py (PyTorch)")


# ---------------------------------------------------------------------------------------------
# Refusals: forms of a type no emitter takes, and training-only layers


@register_keras("Convolution", "Deconvolution",
                when=lambda layer, m: getattr(m, "axis", 1) != 1)
def emit_convolution_axis(ctx: EmitContext) -> KerasEmitted:
    """Caffe (De)Convolution with `axis` other than 1: refused (leading axes folded into the
    batch have no Keras convolution form)."""
    raise ctx.unsupported(f"convolution_param.axis {ctx.module.axis} (leading axes folded "
                          "into the batch)", "use axis 1 (N x C x spatial)")


@register_keras("InnerProduct", when=lambda layer, m: getattr(m, "axis", 1) == 0)
def emit_inner_product_axis0(ctx: EmitContext) -> KerasEmitted:
    """Caffe InnerProduct with axis 0: refused (it contracts the batch axis)."""
    raise ctx.unsupported("inner_product_param.axis 0, a product across the batch axis (a "
                          "Keras model keeps samples apart)", "use axis 1")


def _batch_changing(layer: Layer, m: Any) -> bool:
    """The Flatten/Reshape forms emit_core does not take (they touch the batch axis)."""
    start = getattr(m, "start", 0)
    dims = getattr(m, "dims", None)
    return not (start >= 1 or (dims is not None and len(dims) > 0 and dims[0] == 0))


@register_keras("Flatten", "Reshape", when=_batch_changing)
def emit_reshape_batch(ctx: EmitContext) -> KerasEmitted:
    """Caffe Flatten / Reshape from axis 0: when the top keeps the batch size (Reshape with
    an explicit first dim equal to it), Keras's per-sample Reshape of the bottom in Caffe
    order; otherwise refused (it moves values between samples)."""
    x = ctx.as_layout(ctx.bottoms[0], CAFFE)
    top_shape = ctx.top_shapes[0]
    if not top_shape or not x.caffe_shape or top_shape[0] != x.caffe_shape[0]:
        raise ctx.unsupported(f"a reshape of {x.caffe_shape} into {top_shape}, which moves "
                              "values across the batch axis (a Keras model keeps samples "
                              "apart)",
                              "keep the first dimension (dim: 0) in the prototxt")
    top = KerasTensor(ctx.top_var(0), top_shape, CAFFE)
    return _one(ctx, f"keras.layers.Reshape({lit(tuple(top_shape[1:]))}, {ctx.name_arg})",
                x.var, top)


TRAINING_ONLY = tuple(layer_types("train"))


@register_keras(*TRAINING_ONLY)
def emit_training_only(ctx: EmitContext) -> KerasEmitted:
    """Losses and Accuracy: refused for a Keras export (they compute training signals, not
    the deployed function)."""
    raise ctx.unsupported(f"{ctx.layer.type}, a training-time layer (loss or accuracy), not "
                          "part of the deployed function",
                          "export the deploy net (deploy.prototxt, without loss/accuracy "
                          "layers and label inputs)")

