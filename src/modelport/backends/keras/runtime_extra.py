"""Keras 3 layers for Caffe's less common layer types, written with `keras.ops` only.

Each class reproduces one Caffe (or SSD fork) layer exactly as modelport's PyTorch converters
in `modelport/layers/` do (those are proven against real Caffe goldens), so every Keras backend
(torch, TensorFlow, JAX) computes what Caffe computes. This module imports only keras and numpy:
the export copies each class's source into the generated `model_keras.py`, where it must stand
alone, so a class refers to nothing outside itself but the names `NEEDS` lists for it (copied
before it), and (as in runtime.py) the classes carry no annotations: the copied source runs
without `from __future__ import annotations`.

Axes are Keras axes. A layer whose result depends on Caffe's axis order (ArgMax's flattened
indices, Reduction's kept axes, Embed's appended axis) takes `to_caffe` (the permutation that
turns its Keras-layout input into Caffe's order) and `to_keras` (the permutation that turns its
Caffe-order result into the Keras layout of the top), each None for no permutation. Static
sizes (Crop's window, Deconvolution's output size, PriorBox's boxes) come from the static
shapes Keras models have.
"""

from __future__ import annotations

import keras
import numpy as np

# Every runtime class -> the module-level names of this file its source uses (copied first).
NEEDS: dict[str, tuple[str, ...]] = {
    "CaffeDeconvolution": ("CaffeGroupedConvBase",),
    "CaffeGroupConvolution": ("CaffeGroupedConvBase",),
}

__all__ = [
    "CaffeAbsVal",
    "CaffeArgMax",
    "CaffeBNLL",
    "CaffeClip",
    "CaffeCrop",
    "CaffeDeconvolution",
    "CaffeELU",
    "CaffeEmbed",
    "CaffeExp",
    "CaffeGroupConvolution",
    "CaffeLog",
    "CaffeMVN",
    "CaffeNormalize",
    "CaffePReLU",
    "CaffePermute",
    "CaffePower",
    "CaffePriorBox",
    "CaffeReduction",
    "CaffeSwish",
    "CaffeThreshold",
    "CaffeTile",
]


# ---- element-wise --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="modelport")
class CaffePReLU(keras.layers.Layer):
    """Caffe PReLU (prelu_layer.cpp): y = max(x, 0) + a * min(x, 0), a one learned slope
    (channel_shared; a 1-value weight) or one per channel of `channel_axis` (Caffe's axis 1, in
    Keras layout)."""

    def __init__(self, channel_shared=False, channel_axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.channel_shared = bool(channel_shared)
        self.channel_axis = int(channel_axis)

    def build(self, input_shape):
        shape = (1,) if self.channel_shared else (int(input_shape[self.channel_axis]),)
        self.slope = self.add_weight(name="slope", shape=shape, initializer="zeros")

    def call(self, x):
        view = [1] * len(x.shape)
        if not self.channel_shared:
            view[self.channel_axis] = -1
        slope = keras.ops.reshape(self.slope, view)
        return keras.ops.maximum(x, 0.0) + slope * keras.ops.minimum(x, 0.0)

    def get_config(self):
        return {**super().get_config(), "channel_shared": self.channel_shared,
                "channel_axis": self.channel_axis}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeELU(keras.layers.Layer):
    """Caffe ELU (elu_layer.cpp): y = max(x, 0) + alpha * (exp(min(x, 0)) - 1)."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, x):
        negative = keras.ops.exp(keras.ops.minimum(x, 0.0)) - 1.0
        return keras.ops.maximum(x, 0.0) + self.alpha * negative

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeAbsVal(keras.layers.Layer):
    """Caffe AbsVal (absval_layer.cpp): y = |x|."""

    def call(self, x):
        return keras.ops.abs(x)


@keras.saving.register_keras_serializable(package="modelport")
class CaffeBNLL(keras.layers.Layer):
    """Caffe BNLL (bnll_layer.cpp): y = x + log(1 + exp(-x)) for x > 0, else log(1 + exp(x)).

    Written as max(x, 0) + log(1 + exp(-|x|)), which is the same two branches element by
    element (for x <= 0 it adds 0 to log(1 + exp(x))) without ever forming exp of a large
    positive number, so neither the value nor the gradient overflows."""

    def call(self, x):
        return keras.ops.maximum(x, 0.0) + keras.ops.log1p(keras.ops.exp(-keras.ops.abs(x)))


@keras.saving.register_keras_serializable(package="modelport")
class CaffePower(keras.layers.Layer):
    """Caffe Power (power_layer.cpp): y = (shift + scale * x) ^ power; when power * scale is 0
    Caffe ignores x and fills the top with `constant` (1 for power 0, else shift ^ power)."""

    def __init__(self, power=1.0, scale=1.0, shift=0.0, constant=None, **kwargs):
        super().__init__(**kwargs)
        self.power = float(power)
        self.scale = float(scale)
        self.shift = float(shift)
        self.constant = None if constant is None else float(constant)

    def call(self, x):
        if self.constant is not None:
            return keras.ops.full_like(x, self.constant)
        y = x
        if self.scale != 1.0:
            y = y * self.scale
        if self.shift != 0.0:
            y = y + self.shift
        if self.power != 1.0:
            y = keras.ops.power(y, self.power)
        return y

    def get_config(self):
        return {**super().get_config(), "power": self.power, "scale": self.scale,
                "shift": self.shift, "constant": self.constant}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeExp(keras.layers.Layer):
    """Caffe Exp (exp_layer.cpp): y = base ^ (shift + scale * x), computed as Caffe does:
    outer_scale * exp(inner_scale * x), inner_scale = ln(base) * scale, outer_scale =
    base ^ shift (base -1 meaning e; the float32 factors are the converter's)."""

    def __init__(self, inner_scale=1.0, outer_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.inner_scale = float(inner_scale)
        self.outer_scale = float(outer_scale)

    def call(self, x):
        y = x if self.inner_scale == 1.0 else x * self.inner_scale
        y = keras.ops.exp(y)
        return y if self.outer_scale == 1.0 else y * self.outer_scale

    def get_config(self):
        return {**super().get_config(), "inner_scale": self.inner_scale,
                "outer_scale": self.outer_scale}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeLog(keras.layers.Layer):
    """Caffe Log (log_layer.cpp): y = log_base(shift + scale * x), computed as Caffe does:
    ln(shift + scale * x) * base_scale with base_scale = 1 / ln(base) (base -1 meaning e)."""

    def __init__(self, scale=1.0, shift=0.0, base_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.shift = float(shift)
        self.base_scale = float(base_scale)

    def call(self, x):
        y = x if self.scale == 1.0 else x * self.scale
        if self.shift != 0.0:
            y = y + self.shift
        y = keras.ops.log(y)
        return y if self.base_scale == 1.0 else y * self.base_scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "shift": self.shift,
                "base_scale": self.base_scale}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeThreshold(keras.layers.Layer):
    """Caffe Threshold (threshold_layer.cpp): y = 1 where x > threshold (strictly), else 0."""

    def __init__(self, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.threshold = float(threshold)

    def call(self, x):
        return keras.ops.cast(keras.ops.greater(x, self.threshold), x.dtype)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeClip(keras.layers.Layer):
    """Caffe Clip (clip_layer.cpp): y = std::max(min, std::min(x, max)), in that comparison
    order (a NaN input gives min; min > max gives min everywhere)."""

    def __init__(self, low=0.0, high=0.0, **kwargs):
        super().__init__(**kwargs)
        self.low = float(low)
        self.high = float(high)

    def call(self, x):
        ops = keras.ops
        upper = ops.where(ops.greater(x, self.high), ops.full_like(x, self.high), x)
        return ops.where(ops.greater(upper, self.low), upper, ops.full_like(x, self.low))

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeSwish(keras.layers.Layer):
    """Caffe Swish (swish_layer.cpp): y = x * sigmoid(beta * x)."""

    def __init__(self, beta=1.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)

    def call(self, x):
        inner = x if self.beta == 1.0 else x * self.beta
        return x * keras.ops.sigmoid(inner)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


# ---- normalisation -------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="modelport")
class CaffeMVN(keras.layers.Layer):
    """Caffe MVN (mvn_layer.cpp): subtract the mean over `axes` (Keras axes: H x W of each
    sample and channel, or C x H x W of each sample when across_channels), then, when
    normalize_variance, divide by sqrt(mean((x - mean)^2)) + eps: eps is added to the standard
    deviation, not to the variance."""

    def __init__(self, axes=(), normalize_variance=True, eps=1e-9, **kwargs):
        super().__init__(**kwargs)
        self.axes = [int(a) for a in axes]
        self.normalize_variance = bool(normalize_variance)
        self.eps = float(eps)

    def call(self, x):
        if not self.axes:  # one value per group: x - mean is 0
            return x - x
        axes = tuple(self.axes)
        centred = x - keras.ops.mean(x, axis=axes, keepdims=True)
        if not self.normalize_variance:
            return centred
        std = keras.ops.sqrt(keras.ops.mean(centred * centred, axis=axes, keepdims=True))
        return centred / (std + self.eps)

    def get_config(self):
        return {**super().get_config(), "axes": list(self.axes),
                "normalize_variance": self.normalize_variance, "eps": self.eps}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeNormalize(keras.layers.Layer):
    """SSD Normalize (normalize_layer.cpp, weiliu89/caffe): y = x / norm * s with
    norm = sqrt(sum(x^2) + eps) over every axis but the batch axis of each sample
    (across_spatial) or over the channel axis at each position; s one learned value
    (channel_shared) or one per channel of `channel_axis` (Keras axis)."""

    def __init__(self, across_spatial=True, channel_shared=True, eps=1e-10, channel_axis=-1,
                 **kwargs):
        super().__init__(**kwargs)
        self.across_spatial = bool(across_spatial)
        self.channel_shared = bool(channel_shared)
        self.eps = float(eps)
        self.channel_axis = int(channel_axis)

    def build(self, input_shape):
        shape = (1,) if self.channel_shared else (int(input_shape[self.channel_axis]),)
        self.scale = self.add_weight(name="scale", shape=shape, initializer="ones")

    def call(self, x):
        rank = len(x.shape)
        channel = self.channel_axis % rank
        axes = tuple(range(1, rank)) if self.across_spatial else (channel,)
        norm = keras.ops.sqrt(keras.ops.sum(x * x, axis=axes, keepdims=True) + self.eps)
        view = [1] * rank
        view[channel] = -1
        return x / norm * keras.ops.reshape(self.scale, view)

    def get_config(self):
        return {**super().get_config(), "across_spatial": self.across_spatial,
                "channel_shared": self.channel_shared, "eps": self.eps,
                "channel_axis": self.channel_axis}


# ---- lookups, copies and reductions --------------------------------------------------------


@keras.saving.register_keras_serializable(package="modelport")
class CaffeEmbed(keras.layers.Layer):
    """Caffe Embed (embed_layer.cpp): y[..., :] = W[int(x)] + b, the float input truncated to
    an integer index (static_cast<int>) into the input_dim x num_output table; the top has the
    bottom's axes plus num_output last (Caffe order; `to_keras` permutes it when the top's
    Keras layout differs)."""

    def __init__(self, input_dim=1, num_output=1, use_bias=True, to_keras=None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.num_output = int(num_output)
        self.use_bias = bool(use_bias)
        self.to_keras = None if to_keras is None else [int(a) for a in to_keras]

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=(self.input_dim, self.num_output),
                                     initializer="zeros")
        self.bias = (self.add_weight(name="bias", shape=(self.num_output,),
                                     initializer="zeros") if self.use_bias else None)

    def call(self, x):
        y = keras.ops.take(self.table, keras.ops.cast(x, "int32"), axis=0)
        if self.bias is not None:
            y = y + self.bias
        return y if self.to_keras is None else keras.ops.transpose(y, self.to_keras)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "num_output": self.num_output, "use_bias": self.use_bias,
                "to_keras": self.to_keras}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeTile(keras.layers.Layer):
    """Caffe Tile (tile_layer.cpp): the block of axes from Caffe's `axis` on is copied `tiles`
    times along that axis ([a, b] -> [a, b, a, b]); `axis` is its Keras axis."""

    def __init__(self, axis=1, tiles=1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.tiles = int(tiles)

    def call(self, x):
        repeats = [1] * len(x.shape)
        repeats[self.axis] = self.tiles
        return keras.ops.tile(x, repeats)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "tiles": self.tiles}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeReduction(keras.layers.Layer):
    """Caffe Reduction (reduction_layer.cpp): every axis from Caffe's `axis` on is reduced to
    one number per position of the axes before it, by SUM, ASUM (sum |x|), SUMSQ (sum x^2) or
    MEAN, then times `coeff` (for MEAN already divided by the reduced count, as Caffe does).
    Works in Caffe's axis order (`to_caffe`, `to_keras`)."""

    def __init__(self, operation="SUM", axis=0, coeff=1.0, to_caffe=None, to_keras=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.operation = str(operation)
        self.axis = int(axis)
        self.coeff = float(coeff)
        self.to_caffe = None if to_caffe is None else [int(a) for a in to_caffe]
        self.to_keras = None if to_keras is None else [int(a) for a in to_keras]

    def call(self, x):
        if self.to_caffe is not None:
            x = keras.ops.transpose(x, self.to_caffe)
        if self.axis == 0:  # the whole batch into one number (a 0-axis top)
            flat = keras.ops.reshape(x, (-1,))
        else:  # the batch axis is left free (-1): Keras's symbolic batch size is unknown
            lead = (-1,) + tuple(int(d) for d in x.shape[1: self.axis])
            reduced = int(np.prod([int(d) for d in x.shape[self.axis:]]))
            flat = keras.ops.reshape(x, lead + (reduced,))
        if self.operation == "ASUM":
            flat = keras.ops.abs(flat)
        elif self.operation == "SUMSQ":
            flat = flat * flat
        y = keras.ops.sum(flat, axis=-1)
        if self.coeff != 1.0:
            y = y * self.coeff
        return y if self.to_keras is None else keras.ops.transpose(y, self.to_keras)

    def get_config(self):
        return {**super().get_config(), "operation": self.operation, "axis": self.axis,
                "coeff": self.coeff, "to_caffe": self.to_caffe, "to_keras": self.to_keras}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeArgMax(keras.layers.Layer):
    """Caffe ArgMax (argmax_layer.cpp): the top_k largest values, ordered as Caffe's
    partial_sort with greater<pair<value, index>>: descending value, equal values by the higher
    index first. Without `axis` (None): over each sample's values flattened in Caffe order,
    top N x 1 x top_k (x 1 up to the bottom's rank, at least 3), or N x 2 x top_k with indices
    then values when out_max_val; with a Caffe `axis`, that axis becomes top_k long and holds
    the indices, or the values when out_max_val. Indices are floats. Works in Caffe's axis
    order (`to_caffe`, `to_keras`); the k passes pick one maximum each, so no sort stability
    is assumed of any backend."""

    def __init__(self, top_k=1, out_max_val=False, axis=None, out_rank=3, to_caffe=None,
                 to_keras=None, **kwargs):
        super().__init__(**kwargs)
        self.top_k = int(top_k)
        self.out_max_val = bool(out_max_val)
        self.axis = None if axis is None else int(axis)
        self.out_rank = int(out_rank)
        self.to_caffe = None if to_caffe is None else [int(a) for a in to_caffe]
        self.to_keras = None if to_keras is None else [int(a) for a in to_keras]

    def _top_k_last(self, x):
        """Values and float indices of the top_k entries along the last axis, Caffe's order."""
        # each entry's index along the last axis (also when that axis is the batch, whose size
        # a symbolic trace does not know)
        position = keras.ops.cumsum(keras.ops.ones_like(x), axis=-1) - 1.0
        taken = keras.ops.zeros_like(x, dtype="bool")
        lowest = keras.ops.full_like(x, -np.inf)
        values, indices = [], []
        for _ in range(self.top_k):
            best = keras.ops.max(keras.ops.where(taken, lowest, x), axis=-1, keepdims=True)
            hit = keras.ops.logical_and(keras.ops.logical_not(taken), keras.ops.equal(x, best))
            index = keras.ops.max(keras.ops.where(hit, position, -1.0), axis=-1, keepdims=True)
            taken = keras.ops.logical_or(taken, keras.ops.equal(position, index))
            values.append(best)
            indices.append(index)
        return keras.ops.concatenate(values, axis=-1), keras.ops.concatenate(indices, axis=-1)

    def call(self, x):
        if self.to_caffe is not None:
            x = keras.ops.transpose(x, self.to_caffe)
        if self.axis is None:
            per_sample = int(np.prod([int(d) for d in x.shape[1:]]))
            values, index = self._top_k_last(keras.ops.reshape(x, (-1, per_sample)))
            tail = (1,) * (self.out_rank - 3)
            if self.out_max_val:
                y = keras.ops.reshape(keras.ops.stack([index, values], axis=1),
                                      (-1, 2, self.top_k) + tail)
            else:
                y = keras.ops.reshape(index, (-1, 1, self.top_k) + tail)
        else:
            last = len(x.shape) - 1
            moved = keras.ops.moveaxis(x, self.axis, last)
            values, index = self._top_k_last(moved)
            y = keras.ops.moveaxis(values if self.out_max_val else index, last, self.axis)
        return y if self.to_keras is None else keras.ops.transpose(y, self.to_keras)

    def get_config(self):
        return {**super().get_config(), "top_k": self.top_k, "out_max_val": self.out_max_val,
                "axis": self.axis, "out_rank": self.out_rank, "to_caffe": self.to_caffe,
                "to_keras": self.to_keras}


# ---- plumbing ------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="modelport")
class CaffeCrop(keras.layers.Layer):
    """Caffe Crop (crop_layer.cpp): the first input cut to the reference (second) input's size
    on the cropped axes, starting at their offsets; `begin` and `size` are per Keras axis (-1
    size: the whole axis), so the reference gives only the graph edge Caffe's net has."""

    def __init__(self, begin=(), size=(), **kwargs):
        super().__init__(**kwargs)
        self.begin = [int(b) for b in begin]
        self.size = [int(s) for s in size]

    def call(self, inputs):
        x = inputs[0] if isinstance(inputs, list | tuple) else inputs
        window = tuple(slice(b, None) if s == -1 else slice(b, b + s)
                       for b, s in zip(self.begin, self.size))
        return x[window]

    def compute_output_shape(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape[0], list | tuple) else input_shape
        return tuple(d if s == -1 else s for d, s in zip(shape, self.size))

    def get_config(self):
        return {**super().get_config(), "begin": list(self.begin), "size": list(self.size)}


@keras.saving.register_keras_serializable(package="modelport")
class CaffePermute(keras.layers.Layer):
    """SSD Permute (permute_layer.cpp, weiliu89/caffe): a transpose; `perm` is the Caffe
    permutation already composed with the Keras layouts of bottom and top."""

    def __init__(self, perm=(), **kwargs):
        super().__init__(**kwargs)
        self.perm = [int(a) for a in perm]

    def call(self, x):
        return keras.ops.transpose(x, self.perm)

    def get_config(self):
        return {**super().get_config(), "perm": list(self.perm)}


# ---- deconvolution -------------------------------------------------------------------------


class CaffeGroupedConvBase(keras.layers.Layer):
    """What Caffe's Convolution and Deconvolution layers share here (channels last, 1 to 3
    spatial axes): `filters` outputs, per-axis kernel_size / strides / pad / dilation, `group`
    channel groups, an optional bias of `filters` values, a kernel of `kernel_shape(C)` for
    C input channels (zeros until weights are loaded), and the config of all of these."""

    def __init__(self, filters=1, kernel_size=(1, 1), strides=(1, 1), pad=(0, 0),
                 dilation=(1, 1), group=1, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = [int(k) for k in kernel_size]
        self.strides = [int(s) for s in strides]
        self.pad = [int(p) for p in pad]
        self.dilation = [int(d) for d in dilation]
        self.group = int(group)
        self.use_bias = bool(use_bias)

    def kernel_shape(self, channels):
        """The kernel's shape for `channels` input channels (each subclass's layout)."""
        raise NotImplementedError

    def build(self, input_shape):
        shape = self.kernel_shape(int(input_shape[-1]))
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="zeros")
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
                     if self.use_bias else None)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "pad": list(self.pad), "dilation": list(self.dilation), "group": self.group,
                "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="modelport")
class CaffeDeconvolution(CaffeGroupedConvBase):
    """Caffe Deconvolution (deconv_layer.cpp), channels last, 1 to 3 spatial axes: the
    transpose of Caffe's convolution, output (in - 1) * stride - 2 * pad + dilation * (k - 1)
    + 1 per axis; `group` independent channel groups; optional bias. Each group runs Keras's
    transposed convolution with no padding (its largest output), then `pad` is cut from both
    ends, which is Caffe's col2im with the pad offset. kernel: (*kernel_size, num_output /
    group, C), from Caffe's C x num_output/group x kernel weight."""

    def kernel_shape(self, channels):
        return (*self.kernel_size, self.filters // self.group, channels)

    def _out_sizes(self, spatial):
        return [(int(n) - 1) * s - 2 * p + d * (k - 1) + 1 for n, s, p, d, k in
                zip(spatial, self.strides, self.pad, self.dilation, self.kernel_size)]

    def call(self, x):
        channels = int(x.shape[-1])
        per_group = channels // self.group
        outs = []
        for g in range(self.group):
            part = x if self.group == 1 else x[..., g * per_group : (g + 1) * per_group]
            kernel = (self.kernel if self.group == 1
                      else self.kernel[..., g * per_group : (g + 1) * per_group])
            outs.append(keras.ops.conv_transpose(part, kernel, strides=tuple(self.strides),
                                           padding="valid", data_format="channels_last",
                                           dilation_rate=tuple(self.dilation)))
        y = outs[0] if self.group == 1 else keras.ops.concatenate(outs, axis=-1)
        sizes = self._out_sizes(x.shape[1:-1])
        window = tuple(slice(p, p + n) for p, n in zip(self.pad, sizes))
        y = y[(slice(None), *window, slice(None))]
        if self.bias is not None:
            y = y + self.bias
        return y

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._out_sizes(input_shape[1:-1]), self.filters)


@keras.saving.register_keras_serializable(package="modelport")
class CaffeGroupConvolution(CaffeGroupedConvBase):
    """Caffe grouped Convolution (conv_layer.cpp) with 1 to 3 spatial axes, channels last:
    symmetric zero padding `pad`, then each of the `group` channel groups convolved ('valid')
    with its own slice of the kernel and the results concatenated, plus the bias. One
    convolution per group (not Keras's `groups=`), which TFLite's 3-D convolution lacks.
    kernel: (*kernel_size, C / group, filters), from Caffe's filters x C/group x kernel."""

    def kernel_shape(self, channels):
        return (*self.kernel_size, channels // self.group, self.filters)

    def call(self, x):
        if any(self.pad):
            x = keras.ops.pad(x, [[0, 0], *[[p, p] for p in self.pad], [0, 0]])
        per_group = int(x.shape[-1]) // self.group
        per_out = self.filters // self.group
        outs = []
        for g in range(self.group):
            part = x[..., g * per_group : (g + 1) * per_group]
            kernel = self.kernel[..., g * per_out : (g + 1) * per_out]
            outs.append(keras.ops.conv(part, kernel, strides=tuple(self.strides),
                                       padding="valid", data_format="channels_last",
                                       dilation_rate=tuple(self.dilation)))
        y = keras.ops.concatenate(outs, axis=-1)
        if self.bias is not None:
            y = y + self.bias
        return y

    def compute_output_shape(self, input_shape):
        spatial = [(int(n) + 2 * p - (d * (k - 1) + 1)) // s + 1 for n, p, d, k, s in
                   zip(input_shape[1:-1], self.pad, self.dilation, self.kernel_size,
                       self.strides)]
        return (input_shape[0], *spatial, self.filters)


# ---- SSD priors ----------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="modelport")
class CaffePriorBox(keras.layers.Layer):
    """SSD PriorBox (prior_box_layer.cpp, weiliu89/caffe): a constant 1 x 2 x (H*W*P*4) top
    that depends only on the feature map size `layer_hw` and the image size `image_hw`
    (img_size/img_h/img_w, or the second bottom's): per cell (h, w) centre ((w + offset) *
    step_w, (h + offset) * step_h), step = image / layer size unless given; per min_size a
    min_size square, a sqrt(min * max) square when max_sizes are given, then one box per
    aspect ratio other than 1 (already expanded with flip: r then 1/r), min_size * sqrt(r)
    wide and min_size / sqrt(r) high; corners divided by the image size, clipped to [0, 1]
    when `clip`; channel 1 holds the variances (one for all, or four per box). Computed in
    numpy with the fork's float/double mix."""

    def __init__(self, layer_hw=(1, 1), image_hw=(1, 1), min_sizes=(), max_sizes=(),
                 aspect_ratios=(1.0,), clip=False, variances=(0.1,), step_hw=None, offset=0.5,
                 **kwargs):
        super().__init__(**kwargs)
        self.layer_hw = [int(v) for v in layer_hw]
        self.image_hw = [int(v) for v in image_hw]
        self.min_sizes = [float(v) for v in min_sizes]
        self.max_sizes = [float(v) for v in max_sizes]
        self.aspect_ratios = [float(v) for v in aspect_ratios]
        self.clip = bool(clip)
        self.variances = [float(v) for v in variances]
        self.step_hw = None if step_hw is None else [float(v) for v in step_hw]
        self.offset = float(offset)

    def priors(self):
        """The top, float32 (1, 2, H * W * P * 4)."""
        f32 = np.float32
        layer_h, layer_w = self.layer_hw
        img_h, img_w = self.image_hw
        if self.step_hw is not None:
            step_h, step_w = f32(self.step_hw[0]), f32(self.step_hw[1])
        else:
            step_h, step_w = f32(f32(img_h) / f32(layer_h)), f32(f32(img_w) / f32(layer_w))
        sizes = []  # (box width, box height) as the fork's float variables hold them
        for s, min_size in enumerate(self.min_sizes):
            sizes.append((f32(min_size), f32(min_size)))
            if self.max_sizes:
                side = f32(np.sqrt(np.float64(min_size) * np.float64(self.max_sizes[s])))
                sizes.append((side, side))
            for ratio in self.aspect_ratios:
                if abs(ratio - 1.0) < 1e-6:
                    continue
                root = np.sqrt(np.float64(ratio))
                sizes.append((f32(min_size * root), f32(min_size / root)))
        half_w = np.array([float(w) / 2.0 for w, _ in sizes])
        half_h = np.array([float(h) / 2.0 for _, h in sizes])
        cx = ((np.arange(layer_w, dtype=f32) + f32(self.offset)).astype(f32) * step_w)
        cy = ((np.arange(layer_h, dtype=f32) + f32(self.offset)).astype(f32) * step_h)
        cx64 = cx.astype(np.float64)[None, :, None]
        cy64 = cy.astype(np.float64)[:, None, None]
        corners = np.broadcast_arrays((cx64 - half_w) / img_w, (cy64 - half_h) / img_h,
                                      (cx64 + half_w) / img_w, (cy64 + half_h) / img_h)
        boxes = np.stack(corners, axis=-1)  # H x W x P x 4
        coords = boxes.astype(f32).reshape(-1)
        if self.clip:
            coords = np.minimum(np.maximum(coords, f32(0)), f32(1))
        if len(self.variances) == 1:
            var = np.full(coords.shape, self.variances[0], dtype=f32)
        else:
            var = np.tile(np.array(self.variances, dtype=f32), coords.size // 4)
        return np.stack([coords, var])[None].astype(f32)

    def call(self, inputs):
        return keras.ops.convert_to_tensor(self.priors(), dtype="float32")

    def compute_output_shape(self, input_shape):
        num = len(self.aspect_ratios) * len(self.min_sizes) + len(self.max_sizes)
        return (1, 2, self.layer_hw[0] * self.layer_hw[1] * num * 4)

    def get_config(self):
        return {**super().get_config(), "layer_hw": list(self.layer_hw),
                "image_hw": list(self.image_hw), "min_sizes": list(self.min_sizes),
                "max_sizes": list(self.max_sizes), "aspect_ratios": list(self.aspect_ratios),
                "clip": self.clip, "variances": list(self.variances),
                "step_hw": self.step_hw, "offset": self.offset}
