"""Element-wise activations: ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Power, Exp, Log,
Threshold, Clip, Swish, and Dropout (identity at test).

Each module mirrors the expression Caffe evaluates (`max(x,0) + slope*min(x,0)` rather than a
`where`, the float32 constants Caffe precomputes in LayerSetUp), so edge values (-0, NaN, a
`min > max` clip) come out as Caffe's do. All are plain torch ops without value-dependent Python
control flow, so they trace and export.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext, Shape, filler_or_constant
from modelport.layers.registry import WEIGHT, Affine, fixed_roles, register_layer
from modelport.schema import caffe_pb2

if TYPE_CHECKING:
    from modelport.caffe_rng import CaffeRNG


def _f32(value: float) -> float:
    """`value` rounded to float32, as Caffe's `Dtype` holds it."""
    return float(np.float32(value))


class CaffeReLU(CaffeModule):
    """y = max(x, 0) + negative_slope * min(x, 0)."""

    def __init__(self, negative_slope: float) -> None:
        super().__init__()
        self.negative_slope = _f32(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.negative_slope == 0.0:
            return F.relu(x)
        return torch.clamp(x, min=0) + self.negative_slope * torch.clamp(x, max=0)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


@register_layer("ReLU")
def convert_relu(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe ReLU (layers/relu_layer.cpp): y = max(x, 0) + negative_slope * min(x, 0)
    (negative_slope 0 by default: the plain rectifier; otherwise a leaky ReLU)."""
    ctx.expect_bottoms(1)
    return CaffeReLU(layer.param.relu_param.negative_slope)


class CaffePReLU(CaffeModule):
    """y = max(x, 0) + slope[c] * min(x, 0), c the channel (axis 1); one slope when shared."""

    caffe_blob_names = ("weight",)

    def __init__(self, weight: torch.Tensor, channel_shared: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.channel_shared = channel_shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slope: torch.Tensor = self.weight
        if not self.channel_shared:
            slope = self.weight.reshape((1, -1) + (1,) * (x.dim() - 2))
        return torch.clamp(x, min=0) + slope * torch.clamp(x, max=0)

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape]:
        return [tuple(bottom_shapes[0])]  # weights live on CPU, so no meta-tensor forward

    def extra_repr(self) -> str:
        return f"slopes={tuple(self.weight.shape)}, channel_shared={self.channel_shared}"


def _prelu_fillers(layer: Layer) -> tuple[caffe_pb2.FillerParameter, ...]:
    """prelu_param.filler, else Caffe's default constant 0.25."""
    p = layer.param.prelu_param
    return (filler_or_constant(p, "filler", 0.25),)


@register_layer("PReLU", blobs=fixed_roles(WEIGHT), fillers=_prelu_fillers)
def convert_prelu(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe PReLU (layers/prelu_layer.cpp): y = max(x, 0) + a_c * min(x, 0) with a learned
    slope a_c per channel (axis 1; blob shape (C,)), or one slope for all channels when
    `channel_shared` (blob shape ()); missing slopes are filled with 0.25 unless a filler is
    given; the bottom needs at least 2 axes."""
    ctx.expect_bottoms(1)
    p = layer.param.prelu_param
    shape = ctx.bottom_shapes[0]
    if len(shape) < 2:
        raise ctx.error(f"PReLU needs a bottom with at least 2 axes (N x C ...), got {shape}")
    ctx.expect_blob_count(1)
    (filler,) = _prelu_fillers(layer)
    blob_shape: tuple[int, ...] = () if p.channel_shared else (shape[1],)
    return CaffePReLU(ctx.blob(0, blob_shape, filler), p.channel_shared)


class CaffeELU(CaffeModule):
    """y = max(x, 0) + alpha * (exp(min(x, 0)) - 1)."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = _f32(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=0) + self.alpha * (torch.exp(torch.clamp(x, max=0)) - 1)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


@register_layer("ELU")
def convert_elu(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe ELU (layers/elu_layer.cpp): y = max(x, 0) + alpha * (exp(min(x, 0)) - 1),
    alpha 1 by default."""
    ctx.expect_bottoms(1)
    return CaffeELU(layer.param.elu_param.alpha)


class CaffeSigmoid(CaffeModule):
    """y = 1 / (1 + exp(-x))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


@register_layer("Sigmoid")
def convert_sigmoid(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Sigmoid (layers/sigmoid_layer.cpp): y = 1 / (1 + exp(-x)), evaluated by Caffe as
    0.5 * tanh(0.5 * x) + 0.5."""
    ctx.expect_bottoms(1)
    return CaffeSigmoid()


class CaffeTanH(CaffeModule):
    """y = tanh(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


@register_layer("TanH")
def convert_tanh(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe TanH (layers/tanh_layer.cpp): y = tanh(x)."""
    ctx.expect_bottoms(1)
    return CaffeTanH()


class CaffeAbsVal(CaffeModule):
    """y = |x|."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.abs(x)


@register_layer("AbsVal")
def convert_absval(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe AbsVal (layers/absval_layer.cpp): y = |x|."""
    ctx.expect_bottoms(1)
    return CaffeAbsVal()


class CaffeBNLL(CaffeModule):
    """y = log(1 + exp(x)) in Caffe's overflow-free form."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positive = x + torch.log1p(torch.exp(-x))
        other = torch.log1p(torch.exp(x))
        return torch.where(x > 0, positive, other)


@register_layer("BNLL")
def convert_bnll(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe BNLL (layers/bnll_layer.cpp), the binomial normal log likelihood (softplus):
    y = x > 0 ? x + log(1 + exp(-x)) : log(1 + exp(x))."""
    ctx.expect_bottoms(1)
    return CaffeBNLL()


class CaffePower(CaffeModule):
    """y = (shift + scale * x) ^ power, or a constant when power * scale == 0."""

    def __init__(self, power: float, scale: float, shift: float) -> None:
        super().__init__()
        self.power = _f32(power)
        self.scale = _f32(scale)
        self.shift = _f32(shift)
        self.constant: float | None = None
        if _f32(self.power * self.scale) == 0.0:
            # Caffe ignores the input here: 1 for power 0, else shift^power.
            self.constant = 1.0 if self.power == 0 else _f32(float(
                np.power(np.float32(self.shift), np.float32(self.power))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.constant is not None:
            return torch.full_like(x, self.constant)
        y = x
        if self.scale != 1.0:
            y = y * self.scale
        if self.shift != 0.0:
            y = y + self.shift
        if self.power != 1.0:
            y = torch.pow(y, self.power)
        return y

    def extra_repr(self) -> str:
        return f"power={self.power}, scale={self.scale}, shift={self.shift}"


def power_affine(module: Any, ndim: int) -> Affine | None:
    """Power with power 1 as a per-channel affine map: y = scale * x + shift (one value for
    every channel); None for other powers and for the constant form."""
    if not isinstance(module, CaffePower) or module.constant is not None or module.power != 1.0:
        return None
    return (torch.tensor([float(module.scale)], dtype=torch.float64),
            torch.tensor([float(module.shift)], dtype=torch.float64))


@register_layer("Power", channel_affine=power_affine)
def convert_power(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Power (layers/power_layer.cpp): y = (shift + scale * x) ^ power; when
    power * scale == 0 the output is the constant 1 (power 0) or shift ^ power."""
    ctx.expect_bottoms(1)
    p = layer.param.power_param
    return CaffePower(p.power, p.scale, p.shift)


class CaffeExp(CaffeModule):
    """y = outer_scale * exp(inner_scale * x), Caffe's factoring of base^(shift + scale*x)."""

    def __init__(self, inner_scale: float, outer_scale: float) -> None:
        super().__init__()
        self.inner_scale = inner_scale
        self.outer_scale = outer_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.inner_scale == 1.0 else x * self.inner_scale
        y = torch.exp(y)
        return y if self.outer_scale == 1.0 else y * self.outer_scale

    def extra_repr(self) -> str:
        return f"inner_scale={self.inner_scale}, outer_scale={self.outer_scale}"


def _log_base(base: float, ctx: ConvertContext, what: str) -> np.float32:
    """ln(base) in float32, with base -1 meaning e (Caffe's Exp/Log convention)."""
    if base == -1:
        return np.float32(1.0)
    if not base > 0:
        raise ctx.error(f"{what}.base is {base}; it must be strictly positive, or -1 for e")
    return np.float32(math.log(base))


@register_layer("Exp")
def convert_exp(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Exp (layers/exp_layer.cpp): y = base ^ (shift + scale * x), base -1 meaning e;
    computed as outer * exp(inner * x) with inner = ln(base) * scale and outer = base ^ shift."""
    ctx.expect_bottoms(1)
    p = layer.param.exp_param
    base = np.float32(p.base)
    log_base = _log_base(float(base), ctx, "exp_param")
    inner = float(log_base * np.float32(p.scale))
    shift = np.float32(p.shift)
    if shift == 0:
        outer = 1.0
    elif base == -1:
        outer = _f32(math.exp(float(shift)))
    else:
        outer = _f32(float(base) ** float(shift))
    return CaffeExp(inner, outer)


class CaffeLog(CaffeModule):
    """y = log(shift + scale * x) * base_scale, base_scale = 1 / ln(base)."""

    def __init__(self, scale: float, shift: float, base_scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.shift = shift
        self.base_scale = base_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.scale == 1.0 else x * self.scale
        if self.shift != 0.0:
            y = y + self.shift
        y = torch.log(y)
        return y if self.base_scale == 1.0 else y * self.base_scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}, shift={self.shift}, base_scale={self.base_scale}"


@register_layer("Log")
def convert_log(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Log (layers/log_layer.cpp): y = log_base(shift + scale * x), base -1 meaning e;
    computed as ln(shift + scale * x) * (1 / ln(base)); base 1 is rejected (as Caffe does)."""
    ctx.expect_bottoms(1)
    p = layer.param.log_param
    log_base = _log_base(float(np.float32(p.base)), ctx, "log_param")
    if log_base == 0:
        raise ctx.error("log_param.base is 1, which has no logarithm",
                        "use a base other than 1 (-1 means e)")
    base_scale = float(np.float32(1.0) / log_base)
    return CaffeLog(_f32(p.scale), _f32(p.shift), base_scale)


class CaffeThreshold(CaffeModule):
    """y = 1 where x > threshold, else 0."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = _f32(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > self.threshold).to(x.dtype)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"


@register_layer("Threshold")
def convert_threshold(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Threshold (layers/threshold_layer.cpp): y = x > threshold ? 1 : 0 (strictly
    greater; threshold 0 by default)."""
    ctx.expect_bottoms(1)
    return CaffeThreshold(layer.param.threshold_param.threshold)


class CaffeClip(CaffeModule):
    """y = max(min, min(x, max)) with std::min/std::max's comparison order (NaN -> min)."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low = _f32(low)
        self.high = _f32(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upper = torch.where(x > self.high, self.high, x)  # std::min(x, max)
        return torch.where(upper > self.low, upper, self.low)  # std::max(min, .)

    def extra_repr(self) -> str:
        return f"min={self.low}, max={self.high}"


@register_layer("Clip")
def convert_clip(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Clip (layers/clip_layer.cpp): y = max(min, min(x, max)); clip_param.min and max
    are required (Caffe's schema declares them `required`)."""
    ctx.expect_bottoms(1)
    p = layer.param.clip_param
    missing = [f for f in ("min", "max") if not p.HasField(f)]
    if missing:
        raise ctx.error(f"clip_param.{' and '.join(missing)} is not set",
                        "give both clip_param { min: ... max: ... }")
    return CaffeClip(p.min, p.max)


class CaffeSwish(CaffeModule):
    """y = x * sigmoid(beta * x)."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = _f32(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = x if self.beta == 1.0 else x * self.beta
        return x * torch.sigmoid(inner)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


@register_layer("Swish")
def convert_swish(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Swish (layers/swish_layer.cpp): y = x * sigmoid(beta * x), beta 1 by default."""
    ctx.expect_bottoms(1)
    return CaffeSwish(layer.param.swish_param.beta)


class CaffeDropout(CaffeModule):
    """Identity in eval mode; in training, inverted dropout (keep with 1 - ratio, scale up).

    With `caffe_rng` set (a modelport.caffe_rng.CaffeRNG, by Solver(rng="caffe")), the mask is
    Caffe's: `caffe_rng_bernoulli<double>(count, 1. - threshold_)`, one draw per element and
    forward (also at ratio 0), and `top = bottom * mask * scale_` with
    `scale_ = float(1. / (1. - threshold_))`."""

    def __init__(self, ratio: float) -> None:
        super().__init__()
        self.ratio = _f32(ratio)
        self.caffe_rng: CaffeRNG | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.caffe_rng is not None:
            keep = 1.0 - self.ratio  # threshold_ is the float ratio, 1. - it a double
            mask = self.caffe_rng.bernoulli(keep, x.numel(), np.float64)
            m = torch.from_numpy(mask.astype(np.float32).reshape(x.shape)).to(x.device)
            return (x * m) * _f32(1.0 / keep)
        if self.training and self.ratio > 0.0:
            return F.dropout(x, self.ratio, training=True)
        return x

    def extra_repr(self) -> str:
        return f"dropout_ratio={self.ratio}"


@register_layer("Dropout")
def convert_dropout(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Dropout (layers/dropout_layer.cpp): TEST phase copies the bottom; TRAIN phase
    zeroes each element with probability dropout_ratio and scales the kept ones by
    1 / (1 - dropout_ratio)."""
    ctx.expect_bottoms(1)
    ratio = layer.param.dropout_param.dropout_ratio
    if not 0 <= ratio < 1:
        raise ctx.error(f"dropout_ratio is {ratio}; it must be in [0, 1)")
    return CaffeDropout(ratio)
