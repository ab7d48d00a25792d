"""Caffe semantics Keras lacks, as small Keras 3 layers written with `keras.ops` only (so every
backend runs them: TensorFlow, JAX, PyTorch).

This file imports only keras and numpy: `backends/keras/source.py` copies the SOURCE of the
classes a net needs into the generated model_keras.py (each class's decorator included, so
they register as `modelport>ClassName` for `keras.saving.load_model`). A class may use the
module-level helpers and constants listed for it in `NEEDS`.

Tensors are channels-last (N x H x W x C) where a layer says so; the layers take their
geometry from the static shapes of their inputs, as Caffe's Reshape does.
"""

from __future__ import annotations

import keras
import numpy as np

# Every runtime class -> the module-level names of this file its source uses (copied first).
NEEDS: dict[str, tuple[str, ...]] = {
    "CaffePool2D": ("FLT_MAX", "caffe_pooled_size"),
}

FLT_MAX = 3.4028234663852886e38


def caffe_pooled_size(size, kernel, stride, pad, ceil, any_pad):
    """Caffe's pooled length (pooling_layer.cpp): ceil (or floor) of (size + 2*pad - kernel)
    / stride, plus 1; with any padding, a last window starting in the bottom/right padding is
    dropped."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if any_pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@keras.saving.register_keras_serializable(package="modelport")
class CaffePool2D(keras.layers.Layer):
    """Caffe 2-D pooling on N x H x W x C: Caffe's output size (ceil by default, the last
    window clipped as Caffe clips it); MAX pads with -FLT_MAX; AVE divides each window's sum
    by the window clipped to [-pad, size + pad) (padding inside those bounds counts, overflow
    past them does not). `kernel` None is global pooling over H x W."""

    def __init__(self, method, kernel, strides, pad, ceil=True, **kwargs):
        super().__init__(**kwargs)
        self.method = str(method)
        self.kernel = None if kernel is None else tuple(int(k) for k in kernel)
        self.strides = tuple(int(s) for s in strides)
        self.pad = tuple(int(p) for p in pad)
        self.ceil = bool(ceil)

    def _geometry(self, h, w):
        kernel = self.kernel or (h, w)
        any_pad = any(self.pad)
        out = tuple(caffe_pooled_size(n, k, s, p, self.ceil, any_pad)
                    for n, k, s, p in zip((h, w), kernel, self.strides, self.pad))
        right = tuple(max(0, (o - 1) * s + k - n - p)
                      for o, s, k, n, p in zip(out, self.strides, kernel, (h, w), self.pad))
        return kernel, out, right

    def call(self, x):
        h, w = int(x.shape[1]), int(x.shape[2])
        kernel, out, right = self._geometry(h, w)
        if self.kernel is None and not any(self.pad):  # global: one window, the whole image
            if self.method == "MAX":
                return keras.ops.max(x, axis=(1, 2), keepdims=True)
            return keras.ops.mean(x, axis=(1, 2), keepdims=True)
        ph, pw = self.pad
        widths = [[0, 0], [ph, right[0]], [pw, right[1]], [0, 0]]
        if self.method == "MAX":
            padded = keras.ops.pad(x, widths, constant_values=-FLT_MAX)
            y = keras.ops.max_pool(padded, kernel, self.strides, padding="valid")
            return y[:, : out[0], : out[1], :]
        padded = keras.ops.pad(x, widths)
        means = keras.ops.average_pool(padded, kernel, self.strides, padding="valid")
        means = means[:, : out[0], : out[1], :]
        rows = [min(i * self.strides[0] - ph + kernel[0], h + ph) - (i * self.strides[0] - ph)
                for i in range(out[0])]
        cols = [min(j * self.strides[1] - pw + kernel[1], w + pw) - (j * self.strides[1] - pw)
                for j in range(out[1])]
        area = float(kernel[0] * kernel[1])
        factor = np.array([[area / (r * c) for c in cols] for r in rows], np.float32)
        return means * keras.ops.convert_to_tensor(factor[:, :, None], dtype=x.dtype)

    def compute_output_shape(self, shape):
        _, out, _ = self._geometry(int(shape[1]), int(shape[2]))
        return (shape[0], out[0], out[1], shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(method=self.method, kernel=self.kernel, strides=self.strides,
                      pad=self.pad, ceil=self.ceil)
        return config


@keras.saving.register_keras_serializable(package="modelport")
class CaffeLRN(keras.layers.Layer):
    """Caffe LRN ACROSS_CHANNELS on channels-last input: y = x * (k + alpha_over_n * sum of
    x^2 over the local_size channels centred on c, zero beyond the edges)^-beta, where
    alpha_over_n is Caffe's alpha / local_size (the divisor is always local_size)."""

    def __init__(self, local_size, alpha_over_n, beta, k, **kwargs):
        super().__init__(**kwargs)
        self.local_size = int(local_size)
        self.alpha_over_n = float(alpha_over_n)
        self.beta = float(beta)
        self.k = float(k)

    def call(self, x):
        channels = int(x.shape[-1])
        pre = (self.local_size - 1) // 2
        rank = len(x.shape)
        square = keras.ops.pad(x * x, [[0, 0]] * (rank - 1) + [[pre, pre]])
        total = square[..., 0:channels]
        for offset in range(1, self.local_size):
            total = total + square[..., offset: offset + channels]
        return x * keras.ops.power(self.k + self.alpha_over_n * total, -self.beta)

    def get_config(self):
        config = super().get_config()
        config.update(local_size=self.local_size, alpha_over_n=self.alpha_over_n,
                      beta=self.beta, k=self.k)
        return config


@keras.saving.register_keras_serializable(package="modelport")
class CaffeLRNWithin(keras.layers.Layer):
    """Caffe LRN WITHIN_CHANNEL on N x H x W x C: y = x * (1 + alpha * avg)^-beta, avg the mean
    of x^2 over the local_size x local_size window zero-padded by (local_size-1)/2 (Caffe's
    AVE pooling there always divides by local_size^2; Caffe ignores k in this mode)."""

    def __init__(self, local_size, alpha, beta, **kwargs):
        super().__init__(**kwargs)
        self.local_size = int(local_size)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, x):
        n = self.local_size
        pre = (n - 1) // 2
        square = keras.ops.pad(x * x, [[0, 0], [pre, pre], [pre, pre], [0, 0]])
        avg = keras.ops.average_pool(square, (n, n), (1, 1), padding="valid")
        return x * keras.ops.power(1.0 + self.alpha * avg, -self.beta)

    def get_config(self):
        config = super().get_config()
        config.update(local_size=self.local_size, alpha=self.alpha, beta=self.beta)
        return config


@keras.saving.register_keras_serializable(package="modelport")
class CaffeScale(keras.layers.Layer):
    """Caffe Scale / Bias with learned operands: y = x * scale + bias, each operand of `shape`
    (the input's shape without the batch axis, 1 where Caffe broadcasts)."""

    def __init__(self, shape, scale=True, bias=True, **kwargs):
        super().__init__(**kwargs)
        self.shape = tuple(int(d) for d in shape)
        self.use_scale = bool(scale)
        self.use_bias = bool(bias)

    def build(self, input_shape):
        if self.use_scale:
            self.scale = self.add_weight(shape=self.shape, initializer="ones", name="scale")
        if self.use_bias:
            self.bias = self.add_weight(shape=self.shape, initializer="zeros", name="bias")

    def call(self, x):
        y = x * self.scale if self.use_scale else x
        return y + self.bias if self.use_bias else y

    def get_config(self):
        config = super().get_config()
        config.update(shape=self.shape, scale=self.use_scale, bias=self.use_bias)
        return config


@keras.saving.register_keras_serializable(package="modelport")
class CaffeScaleBy(keras.layers.Layer):
    """Caffe Scale / Bias with a second bottom covering the first axes of x (batch included):
    the operand (in Caffe's axis order) is reshaped to `broadcast` (Caffe order, 1 where it
    broadcasts, batch axis -1), transposed by `perm` into x's layout, then multiplied (Scale)
    or added (Bias)."""

    def __init__(self, broadcast, perm, op="mul", **kwargs):
        super().__init__(**kwargs)
        self.broadcast = tuple(int(d) for d in broadcast)
        self.perm = tuple(int(a) for a in perm)
        self.op = str(op)

    def call(self, inputs):
        x, operand = inputs
        operand = keras.ops.transpose(keras.ops.reshape(operand, self.broadcast), self.perm)
        return x * operand if self.op == "mul" else x + operand

    def get_config(self):
        config = super().get_config()
        config.update(broadcast=self.broadcast, perm=self.perm, op=self.op)
        return config


@keras.saving.register_keras_serializable(package="modelport")
class CaffeEltwiseSum(keras.layers.Layer):
    """Caffe Eltwise SUM with coefficients: y = c0 * b0 + c1 * b1 + ..., in bottom order."""

    def __init__(self, coeffs, **kwargs):
        super().__init__(**kwargs)
        self.coeffs = tuple(float(c) for c in coeffs)

    def call(self, inputs):
        out = inputs[0] * self.coeffs[0]
        for b, c in zip(inputs[1:], self.coeffs[1:]):
            out = out + b * c
        return out

    def get_config(self):
        config = super().get_config()
        config.update(coeffs=self.coeffs)
        return config


@keras.saving.register_keras_serializable(package="modelport")
class CaffeSlice(keras.layers.Layer):
    """Caffe Slice: x cut along `axis` into consecutive pieces of `sizes`."""

    def __init__(self, axis, sizes, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.sizes = tuple(int(s) for s in sizes)

    def call(self, x):
        bounds = np.cumsum(self.sizes)[:-1].tolist()
        return keras.ops.split(x, bounds, axis=self.axis)

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, sizes=self.sizes)
        return config


@keras.saving.register_keras_serializable(package="modelport")
class CaffeSplit(keras.layers.Layer):
    """Caffe Split: the bottom, once per top."""

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self.count = int(count)

    def call(self, x):
        return [keras.ops.copy(x) for _ in range(self.count)]

    def get_config(self):
        config = super().get_config()
        config.update(count=self.count)
        return config
