"""Keras emitters of the common Caffe layer types (see backends/keras/registry.py).

Each reads the converted torch module's attributes (modelport's layers/ decoded Caffe's
parameters already) and writes standard Keras layers where they compute Caffe's function
exactly, the custom layers of runtime.py where they do not. Axes are remapped from Caffe's
N x C x H x W to the Keras tensor's layout (channels-last for 4-D feature maps).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport import caffe_math
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
from modelport.schema import caffe_pb2

PP = caffe_pb2.PoolingParameter
EP = caffe_pb2.EltwiseParameter

# What to do with a net Keras cannot express: the exports that keep any tensor shape.
OTHER = "export this net with --onnx or --torchscript instead"


def _one(ctx: EmitContext, expr: str, x: str, layout: str, shape_index: int = 0,
         weights: list[np.ndarray] | None = None, runtime: tuple[str, ...] = ()) -> KerasEmitted:
    """The common case: `top = expr(x)`, one top of the given layout."""
    top = KerasTensor(ctx.top_var(0), ctx.top_shapes[shape_index], layout)
    return ctx.emitted([f"{top.var} = {expr}({x})"], [top], weights or [], runtime)


# ---------------------------------------------------------------------------------------------
# Inputs


@register_keras("Input", "MemoryData", "DummyData", "Data", "ImageData", "HDF5Data",
                "WindowData")
def emit_input(ctx: EmitContext) -> KerasEmitted:
    """`keras.Input` per top, named after the blob (channels-last from 4 axes on); the batch
    axis stays free."""
    lines, tops = [], []
    for j, top in enumerate(ctx.layer.tops):
        shape = ctx.top_shapes[j]
        layout = CHANNELS_LAST if len(shape) >= 4 else CAFFE
        t = KerasTensor(ctx.top_var(j), shape, layout)
        name = ctx.names.keras(top)
        lines.append(f"{t.var} = keras.Input(shape={lit(t.keras_shape[1:])}, name={lit(name)})")
        tops.append(t)
    return KerasEmitted(lines, tops, layer_name=None)


# ---------------------------------------------------------------------------------------------
# Convolution


def _is_conv2d(layer: Layer, m: Any) -> bool:
    return (getattr(m, "axis", None) == 1 and len(getattr(m, "stride", ())) == 2
            and not getattr(m, "transposed", True))


def conv_padding(ctx: EmitContext, x: str, pad: tuple[int, ...]) -> tuple[str, str]:
    """Caffe's symmetric zero padding before a 'valid' Keras convolution: (the padded input
    expression, the Keras `padding` argument). Keras's 'same' pads asymmetrically (more at the
    bottom/right) and by another amount, so it is never used."""
    if not any(pad):
        return x, "valid"
    widths = tuple((p, p) for p in pad)
    return (f"keras.layers.ZeroPadding2D({lit(widths)}, name={lit(ctx.helper_name('pad'))})"
            f"({x})"), "valid"


@register_keras("Convolution", when=_is_conv2d)
def emit_convolution(ctx: EmitContext) -> KerasEmitted:
    """Caffe Convolution (2-D, axis 1): zero padding `pad` on both sides, then Conv2D 'valid'
    with strides, dilation_rate and groups; kernel O x I/g x kh x kw -> kh x kw x I/g x O."""
    m = ctx.module
    x = ctx.as_layout(ctx.bottoms[0], CHANNELS_LAST)
    weight = to_numpy(m.weight)
    out_ch, _, kh, kw = weight.shape
    stride, dilation = tuple(m.stride), tuple(m.dilation)
    if max(stride) > 1 and max(dilation) > 1:
        raise ctx.unsupported(f"stride {stride} with dilation {dilation}: Keras convolutions "
                              "take strides > 1 or dilation > 1, not both",
                              "export with stride 1 or without dilation")
    source, padding = conv_padding(ctx, x.var, tuple(m.pad))
    kwargs = [f"strides={lit(stride)}", f"padding={lit(padding)}"]
    if max(dilation) > 1:
        kwargs.append(f"dilation_rate={lit(dilation)}")
    if m.group != 1:
        kwargs.append(f"groups={lit(int(m.group))}")
    weights = [weight.transpose(2, 3, 1, 0)]
    if m.bias is None:
        kwargs.append("use_bias=False")
    else:
        weights.append(to_numpy(m.bias))
    expr = (f"keras.layers.Conv2D({lit(int(out_ch))}, {lit((int(kh), int(kw)))}, "
            f"{', '.join(kwargs)}, {ctx.name_arg})")
    return _one(ctx, expr, source, CHANNELS_LAST, weights=weights)


# ---------------------------------------------------------------------------------------------
# Pooling


def _keras_pool_matches(m: Any, h: int, w: int) -> bool:
    """Whether Keras's 'valid' pooling places Caffe's windows: no padding and no window past
    the image (ceil and floor agree)."""
    if m.kernel is None or any(m.pad):
        return False
    return all((n - k) % s == 0 and n >= k for n, k, s in zip((h, w), m.kernel, m.stride))


@register_keras("Pooling")
def refuse_pooling_mask(ctx: EmitContext) -> KerasEmitted:
    """Caffe MAX pooling with its mask top (argmax indices): refused."""
    raise ctx.unsupported("MAX pooling with a mask top (Caffe's argmax indices)",
                          "drop the second top, or " + OTHER)


@register_keras("Pooling", when=lambda layer, m: not getattr(m, "with_mask", False))
def emit_pooling(ctx: EmitContext) -> KerasEmitted:
    """Caffe Pooling MAX / AVE: MaxPooling2D / AveragePooling2D where Caffe's windows are
    Keras's 'valid' ones; otherwise CaffePool2D (ceil output size, clipped last window, AVE
    divisor counting the padding inside the padded bounds only, global pooling)."""
    m = ctx.module
    method = {PP.MAX: "MAX", PP.AVE: "AVE"}.get(m.method)
    if method is None:
        raise ctx.unsupported("STOCHASTIC pooling", "use MAX or AVE pooling, or " + OTHER)
    x = ctx.as_layout(ctx.bottoms[0], CHANNELS_LAST)
    if x.rank != 4:
        raise ctx.unsupported(f"pooling of a {x.rank}-axis blob", "pool an N x C x H x W blob")
    h, w = x.caffe_shape[2], x.caffe_shape[3]
    if _keras_pool_matches(m, h, w):
        cls = "MaxPooling2D" if method == "MAX" else "AveragePooling2D"
        expr = (f"keras.layers.{cls}({lit(tuple(m.kernel))}, strides={lit(tuple(m.stride))}, "
                f"padding='valid', {ctx.name_arg})")
        return _one(ctx, expr, x.var, CHANNELS_LAST)
    kernel = None if m.kernel is None else tuple(m.kernel)
    expr = (f"CaffePool2D({lit(method)}, {lit(kernel)}, {lit(tuple(m.stride))}, "
            f"{lit(tuple(m.pad))}, ceil={lit(bool(m.ceil))}, {ctx.name_arg})")
    return _one(ctx, expr, x.var, CHANNELS_LAST, runtime=("CaffePool2D",))


# ---------------------------------------------------------------------------------------------
# InnerProduct


@register_keras("InnerProduct", when=lambda layer, m: getattr(m, "axis", 0) >= 1)
def emit_inner_product(ctx: EmitContext) -> KerasEmitted:
    """Caffe InnerProduct: the axes from `axis` on flattened in Caffe's C order, then Dense.

    From a channels-last feature map (axis 1) Keras's Flatten gives H, W, C order; the Dense
    kernel rows are re-ordered to it instead of transposing the data, so the Dense layer
    gives Caffe's numbers. Weight N x K (or K x N with transpose) -> kernel K x N."""
    m = ctx.module
    b = ctx.bottoms[0]
    axis = int(m.axis)
    weight = to_numpy(m.weight)
    kernel = weight if m.transpose else weight.T
    k_in, n_out = kernel.shape
    weights = [kernel]
    if m.bias is not None:
        weights.append(to_numpy(m.bias))
    dense = (f"keras.layers.Dense({lit(int(n_out))}"
             f"{'' if m.bias is not None else ', use_bias=False'}, {ctx.name_arg})")
    if axis == b.rank - 1:  # one axis to contract: Dense on it as it lies (Caffe order)
        x = ctx.as_layout(b, CAFFE)
        return _one(ctx, dense, x.var, CAFFE, weights=weights)
    if axis == 1 and b.layout == CHANNELS_LAST:
        dims = b.caffe_shape[1:]
        order = tuple(a - 1 for a in b.perm[1:])  # Caffe axes (without batch) in Keras order
        weights[0] = (kernel.reshape(*dims, n_out).transpose(*order, len(dims))
                      .reshape(k_in, n_out))
        flat = f"keras.layers.Flatten(name={lit(ctx.helper_name('flatten'))})({b.var})"
        return _one(ctx, dense, flat, CAFFE, weights=weights)
    x = ctx.as_layout(b, CAFFE)
    target = tuple(b.caffe_shape[1:axis]) + (int(k_in),)
    flat = (f"keras.layers.Reshape({lit(target)}, name={lit(ctx.helper_name('flatten'))})"
            f"({x.var})")
    return _one(ctx, dense, flat, CAFFE, weights=weights)


# ---------------------------------------------------------------------------------------------
# Activations, Dropout


@register_keras("ReLU")
def emit_relu(ctx: EmitContext) -> KerasEmitted:
    """Caffe ReLU: ReLU, or LeakyReLU(negative_slope) when the slope is not 0."""
    slope = float(ctx.module.negative_slope)
    b = ctx.bottoms[0]
    if slope == 0.0:
        return _one(ctx, f"keras.layers.ReLU({ctx.name_arg})", b.var, b.layout)
    return _one(ctx, f"keras.layers.LeakyReLU(negative_slope={lit(slope)}, {ctx.name_arg})",
                b.var, b.layout)


@register_keras("Sigmoid", "TanH")
def emit_sigmoid_tanh(ctx: EmitContext) -> KerasEmitted:
    """Caffe Sigmoid / TanH: Keras's element-wise activations."""
    fn = "sigmoid" if ctx.layer.type == "Sigmoid" else "tanh"
    b = ctx.bottoms[0]
    return _one(ctx, f"keras.layers.Activation({lit(fn)}, {ctx.name_arg})", b.var, b.layout)


@register_keras("Dropout")
def emit_dropout(ctx: EmitContext) -> KerasEmitted:
    """Caffe Dropout: identity at inference; in training Keras's inverted dropout is Caffe's
    (keep with 1 - ratio, scale by 1 / (1 - ratio))."""
    b = ctx.bottoms[0]
    rate = float(ctx.module.ratio)
    return _one(ctx, f"keras.layers.Dropout({lit(rate)}, {ctx.name_arg})", b.var, b.layout)


# ---------------------------------------------------------------------------------------------
# LRN


def lrn_alpha_over_n(module: Any) -> float:
    """Caffe's ACROSS_CHANNELS scale factor: alpha / local_size (the module holds it)."""
    return float(module.alpha_over_n)


@register_keras("LRN")
def emit_lrn(ctx: EmitContext) -> KerasEmitted:
    """Caffe LRN: ACROSS_CHANNELS as CaffeLRN (alpha / local_size, zero-padded channel window),
    WITHIN_CHANNEL as CaffeLRNWithin; both on channels-last 4-D input."""
    m = ctx.module
    x = ctx.as_layout(ctx.bottoms[0], CHANNELS_LAST)
    if hasattr(m, "alpha_over_n"):
        expr = (f"CaffeLRN({lit(int(m.local_size))}, alpha_over_n={lit(lrn_alpha_over_n(m))}, "
                f"beta={lit(float(m.beta))}, k={lit(float(m.k))}, {ctx.name_arg})")
        return _one(ctx, expr, x.var, CHANNELS_LAST, runtime=("CaffeLRN",))
    expr = (f"CaffeLRNWithin({lit(int(m.local_size))}, alpha={lit(float(m.alpha))}, "
            f"beta={lit(float(m.beta))}, {ctx.name_arg})")
    return _one(ctx, expr, x.var, CHANNELS_LAST, runtime=("CaffeLRNWithin",))


# ---------------------------------------------------------------------------------------------
# Softmax, Concat, Slice, Split, Eltwise


@register_keras("Softmax")
def emit_softmax(ctx: EmitContext) -> KerasEmitted:
    """Caffe Softmax along `axis` (remapped to the tensor's layout)."""
    b = ctx.bottoms[0]
    axis = b.keras_axis(int(ctx.module.axis))
    if axis == 0:
        raise ctx.unsupported("softmax over the batch axis (a Keras model keeps samples "
                              "apart)", OTHER)
    return _one(ctx, f"keras.layers.Softmax(axis={lit(axis)}, {ctx.name_arg})", b.var,
                b.layout)


@register_keras("Concat")
def emit_concat(ctx: EmitContext) -> KerasEmitted:
    """Caffe Concat along `axis`: Concatenate on the remapped axis (one bottom: Identity)."""
    bottoms = ctx.same_layout(ctx.bottoms)
    first = bottoms[0]
    if len(bottoms) == 1:
        return _one(ctx, f"keras.layers.Identity({ctx.name_arg})", first.var, first.layout)
    axis = first.keras_axis(int(ctx.module.axis))
    if axis == 0:
        raise ctx.unsupported("concatenation along the batch axis (a Keras model keeps "
                              "samples apart)", OTHER)
    inputs = "[" + ", ".join(t.var for t in bottoms) + "]"
    return _one(ctx, f"keras.layers.Concatenate(axis={lit(axis)}, {ctx.name_arg})", inputs,
                first.layout)


@register_keras("Slice")
def emit_slice(ctx: EmitContext) -> KerasEmitted:
    """Caffe Slice: CaffeSlice along the remapped axis into Caffe's piece sizes."""
    b = ctx.bottoms[0]
    m = ctx.module
    if len(m.sizes) == 1:
        return _one(ctx, f"keras.layers.Identity({ctx.name_arg})", b.var, b.layout)
    axis = b.keras_axis(int(m.axis))
    if axis == 0:
        raise ctx.unsupported("slicing along the batch axis (a Keras model keeps samples "
                              "apart)", OTHER)
    tops = [KerasTensor(ctx.top_var(j), ctx.top_shapes[j], b.layout)
            for j in range(len(ctx.layer.tops))]
    line = (f"{', '.join(t.var for t in tops)} = CaffeSlice({lit(axis)}, "
            f"{lit(tuple(int(s) for s in m.sizes))}, {ctx.name_arg})({b.var})")
    return ctx.emitted([line], tops, runtime=("CaffeSlice",))


@register_keras("Split")
def emit_split(ctx: EmitContext) -> KerasEmitted:
    """Caffe Split: the bottom once per top (CaffeSplit; one top: Identity)."""
    b = ctx.bottoms[0]
    count = len(ctx.layer.tops)
    if count == 1:
        return _one(ctx, f"keras.layers.Identity({ctx.name_arg})", b.var, b.layout)
    tops = [KerasTensor(ctx.top_var(j), ctx.top_shapes[j], b.layout) for j in range(count)]
    line = f"{', '.join(t.var for t in tops)} = CaffeSplit({count}, {ctx.name_arg})({b.var})"
    return ctx.emitted([line], tops, runtime=("CaffeSplit",))


@register_keras("Eltwise")
def emit_eltwise(ctx: EmitContext) -> KerasEmitted:
    """Caffe Eltwise: PROD -> Multiply, MAX -> Maximum, SUM -> Add (all coefficients 1) or
    CaffeEltwiseSum(coeffs)."""
    m = ctx.module
    bottoms = ctx.same_layout(ctx.bottoms)
    inputs = "[" + ", ".join(t.var for t in bottoms) + "]"
    layout = bottoms[0].layout
    if m.operation == EP.PROD:
        return _one(ctx, f"keras.layers.Multiply({ctx.name_arg})", inputs, layout)
    if m.operation == EP.MAX:
        return _one(ctx, f"keras.layers.Maximum({ctx.name_arg})", inputs, layout)
    coeffs = tuple(float(c) for c in m.coeffs)
    if all(c == 1.0 for c in coeffs):
        return _one(ctx, f"keras.layers.Add({ctx.name_arg})", inputs, layout)
    return _one(ctx, f"CaffeEltwiseSum({lit(coeffs)}, {ctx.name_arg})", inputs, layout,
                runtime=("CaffeEltwiseSum",))


# ---------------------------------------------------------------------------------------------
# BatchNorm, Scale, Bias


@register_keras("BatchNorm")
def refuse_batch_norm_batch_stats(ctx: EmitContext) -> KerasEmitted:
    """Caffe BatchNorm normalising with the batch's statistics (TRAIN phase): refused."""
    raise ctx.unsupported("BatchNorm with batch statistics (use_global_stats false: the TRAIN "
                          "phase)", "export the TEST phase, or set use_global_stats: true")


@register_keras("BatchNorm", when=lambda layer, m: bool(getattr(m, "use_global_stats", False)))
def emit_batch_norm(ctx: EmitContext) -> KerasEmitted:
    """Caffe BatchNorm with global statistics: BatchNormalization without affine part
    (center/scale False) on the channel axis, moving mean/variance = the stored sums times
    Caffe's factor (1/scale_factor, 0 when it is 0), epsilon as Caffe's, momentum
    moving_average_fraction."""
    m = ctx.module
    b = ctx.bottoms[0]
    if b.rank < 2:
        raise ctx.unsupported("BatchNorm of a blob with fewer than 2 axes", OTHER)
    factor = caffe_math.batchnorm_scale(float(to_numpy(m.scale_factor).reshape(-1)[0]))
    mean = (to_numpy(m.mean).astype(np.float64) * factor).astype(np.float32)
    var = (to_numpy(m.variance).astype(np.float64) * factor).astype(np.float32)
    expr = (f"keras.layers.BatchNormalization(axis={lit(b.keras_axis(1))}, "
            f"epsilon={lit(float(m.eps))}, momentum={lit(float(m.moving_average_fraction))}, "
            f"center=False, scale=False, {ctx.name_arg})")
    return _one(ctx, expr, b.var, b.layout, weights=[mean, var])


def _operand_shape(ctx: EmitContext, x: KerasTensor, operand: np.ndarray,
                   trailing: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(Caffe-order broadcast shape, Keras shape without batch) of a learned Scale/Bias
    operand covering x's Caffe axes [first, first + operand.ndim)."""
    first = x.rank - trailing - operand.ndim
    full = [1] * x.rank
    for i, d in enumerate(operand.shape):
        full[first + i] = int(d)
    if operand.ndim and first == 0 and full[0] != 1:
        raise ctx.unsupported("a learned operand over the batch axis (its size is fixed by "
                              "the batch)", OTHER)
    keras_shape = tuple(full[a] for a in x.perm)[1:]
    return tuple(full), keras_shape


def _in_keras_layout(x: KerasTensor, operand: np.ndarray, full: tuple[int, ...]) -> np.ndarray:
    return np.transpose(operand.reshape(full), x.perm)[0]


def _scale_by_bottom(ctx: EmitContext, x: KerasTensor, op: str) -> KerasEmitted:
    """Scale / Bias by a second bottom covering x's first axes (batch included)."""
    operand = ctx.as_layout(ctx.bottoms[1], CAFFE)
    trailing = int(ctx.module.trailing)
    first = x.rank - trailing - operand.rank
    if first != 0 or operand.rank == 0:
        raise ctx.unsupported(f"a second bottom covering axes from {first} (only operands "
                              "starting at the batch axis have a Keras form)", OTHER)
    broadcast = (-1, *operand.caffe_shape[1:], *([1] * trailing))
    expr = (f"CaffeScaleBy({lit(broadcast)}, {lit(x.perm)}, op={lit(op)}, {ctx.name_arg})")
    return _one(ctx, expr, f"[{x.var}, {operand.var}]", x.layout, runtime=("CaffeScaleBy",))


@register_keras("Scale")
def emit_scale(ctx: EmitContext) -> KerasEmitted:
    """Caffe Scale: learned scale (and bias) as CaffeScale, broadcast as Caffe places it
    (axis / num_axes), in the input's layout; a second bottom as CaffeScaleBy."""
    m = ctx.module
    x = ctx.bottoms[0]
    if len(ctx.bottoms) > 1:
        if m.bias is not None:
            raise ctx.unsupported("a second-bottom Scale with a learned bias over the batch "
                                  "axis", OTHER)
        return _scale_by_bottom(ctx, x, "mul")
    weight = to_numpy(m.weight)
    full, shape = _operand_shape(ctx, x, weight, int(m.trailing))
    weights = [_in_keras_layout(x, weight, full)]
    if m.bias is not None:
        weights.append(_in_keras_layout(x, to_numpy(m.bias), full))
    expr = (f"CaffeScale({lit(shape)}, bias={lit(m.bias is not None)}, {ctx.name_arg})")
    return _one(ctx, expr, x.var, x.layout, weights=weights, runtime=("CaffeScale",))


@register_keras("Bias")
def emit_bias(ctx: EmitContext) -> KerasEmitted:
    """Caffe Bias: learned bias as CaffeScale(scale=False), a second bottom as CaffeScaleBy."""
    m = ctx.module
    x = ctx.bottoms[0]
    if len(ctx.bottoms) > 1:
        return _scale_by_bottom(ctx, x, "add")
    bias = to_numpy(m.bias)
    full, shape = _operand_shape(ctx, x, bias, int(m.trailing))
    expr = f"CaffeScale({lit(shape)}, scale=False, {ctx.name_arg})"
    return _one(ctx, expr, x.var, x.layout, weights=[_in_keras_layout(x, bias, full)],
                runtime=("CaffeScale",))


# ---------------------------------------------------------------------------------------------
# Flatten, Reshape


def _keeps_batch(layer: Layer, m: Any) -> bool:
    """Whether a Flatten/Reshape leaves the batch axis alone (Keras's Reshape only reshapes
    each sample)."""
    start = getattr(m, "start", 0)
    dims = getattr(m, "dims", None)
    return start >= 1 or (dims is not None and len(dims) > 0 and dims[0] == 0)


@register_keras("Flatten", "Reshape", when=_keeps_batch)
def emit_reshape(ctx: EmitContext) -> KerasEmitted:
    """Caffe Flatten / Reshape (batch axis kept): the input in Caffe's axis order (C order is
    what Caffe reshapes), then Reshape to Caffe's top shape."""
    x = ctx.as_layout(ctx.bottoms[0], CAFFE)
    top = ctx.top_shapes[0]
    if top[0] != x.caffe_shape[0]:
        raise ctx.unsupported(f"a reshape of {x.caffe_shape} into {top} that changes the batch "
                              "axis (a Keras model reshapes each sample)", OTHER)
    return _one(ctx, f"keras.layers.Reshape({lit(tuple(top[1:]))}, {ctx.name_arg})", x.var,
                CAFFE)
