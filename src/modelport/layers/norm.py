"""Normalisation layers: LRN, BatchNorm, Scale, Bias, MVN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modelport import caffe_math
from modelport.caffe_math import batchnorm_scale_tensor  # by name: model.py copies it
from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext, Shape, filler_or_constant
from modelport.layers.pooling import CaffePooling
from modelport.layers.registry import (
    BIAS,
    STATISTIC,
    WEIGHT,
    Affine,
    fixed_roles,
    register_layer,
)
from modelport.schema import caffe_pb2

LRNP = caffe_pb2.LRNParameter


# ---- LRN -------------------------------------------------------------------------------------


class CaffeLRNAcross(CaffeModule):
    """ACROSS_CHANNELS LRN: y = x * (k + alpha/n * sum of x^2 over n channels)^-beta.

    The channel window is centred on each channel and zero-padded at both channel edges, so the
    divisor is always n (local_size), even where the window sticks out of the channels.
    """

    def __init__(self, local_size: int, alpha: float, beta: float, k: float) -> None:
        super().__init__()
        self.local_size = local_size
        self.alpha_over_n = caffe_math.lrn_scale_alpha(alpha, local_size, False)
        self.beta = beta
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        pre_pad = (self.local_size - 1) // 2
        square = F.pad(x * x, (0, 0, 0, 0, pre_pad, pre_pad))
        window_sum = square[:, 0:channels]
        for offset in range(1, self.local_size):
            window_sum = window_sum + square[:, offset : offset + channels]
        scale = self.k + self.alpha_over_n * window_sum
        return x * torch.pow(scale, -self.beta)

    def extra_repr(self) -> str:
        return (f"ACROSS_CHANNELS local_size={self.local_size}, "
                f"alpha/n={self.alpha_over_n:g}, beta={self.beta:g}, k={self.k:g}")


class CaffeLRNWithin(CaffeModule):
    """WITHIN_CHANNEL LRN, built as Caffe builds it: square -> AVE pooling (kernel n, pad
    (n-1)/2, stride 1, Caffe's padded-window divisor) -> (1 + alpha * avg)^-beta -> times x.
    Caffe's internal Power layer has shift 1, so `k` plays no part here."""

    def __init__(self, local_size: int, alpha: float, beta: float) -> None:
        super().__init__()
        pre_pad = (local_size - 1) // 2
        self.pool = CaffePooling(caffe_pb2.PoolingParameter.AVE, (local_size, local_size),
                                 (1, 1), (pre_pad, pre_pad), ceil=True)
        self.local_size = local_size
        self.alpha = alpha
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        averaged = self.pool(x * x)
        assert isinstance(averaged, torch.Tensor)
        return x * torch.pow(1.0 + self.alpha * averaged, -self.beta)

    def extra_repr(self) -> str:
        return (f"WITHIN_CHANNEL local_size={self.local_size}, alpha={self.alpha:g}, "
                f"beta={self.beta:g}")


@register_layer("LRN")
def convert_lrn(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe LRN (src/caffe/layers/lrn_layer.cpp), 4-D bottoms only, odd local_size n.

    ACROSS_CHANNELS: y = x * (k + alpha/n * sum(x^2 over the n channels centred on c, zero
    beyond the channel edges))^-beta. WITHIN_CHANNEL: Caffe chains Split, Power (x^2), AVE
    Pooling (kernel n, pad (n-1)/2, stride 1; padded cells count in the divisor) and Power
    (shift 1, scale alpha, power -beta), then an Eltwise PROD with x: k is ignored."""
    ctx.expect_bottoms(1)
    p = layer.param.lrn_param
    shape = ctx.bottom_shapes[0]
    if len(shape) != 4:
        raise ctx.error(f"LRN needs a 4-D N x C x H x W bottom, got {shape}")
    if p.local_size % 2 != 1:
        raise ctx.error(f"local_size {p.local_size} must be odd (Caffe supports only odd sizes)")
    if p.norm_region == LRNP.ACROSS_CHANNELS:
        return CaffeLRNAcross(p.local_size, p.alpha, p.beta, p.k)
    if p.norm_region == LRNP.WITHIN_CHANNEL:
        return CaffeLRNWithin(p.local_size, p.alpha, p.beta)
    raise ctx.error(f"unknown norm_region {p.norm_region}")


# ---- BatchNorm -------------------------------------------------------------------------------


class CaffeBatchNorm(CaffeModule):
    """Caffe BatchNorm: normalisation over axis 1 without an affine part (a Scale layer
    follows in Caffe nets).

    Buffers hold Caffe's three blobs as stored: `mean` and `variance` are running *sums* and
    `scale_factor` (shape (1,)) their weight. With global stats the layer uses
    mean = mean/scale_factor, var = variance/scale_factor (both 0 when scale_factor is 0).
    Otherwise it normalises with the batch statistics (biased variance) and, outside shape
    inference, updates the three buffers in place exactly as Caffe's forward pass does.
    """

    caffe_blob_names = ("mean", "variance", "scale_factor")
    mean: torch.Tensor
    variance: torch.Tensor
    scale_factor: torch.Tensor

    def __init__(self, mean: torch.Tensor, variance: torch.Tensor, scale_factor: torch.Tensor,
                 eps: float, use_global_stats: bool, moving_average_fraction: float) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("variance", variance)
        self.register_buffer("scale_factor", scale_factor)
        self.eps = eps
        self.use_global_stats = use_global_stats
        self.moving_average_fraction = moving_average_fraction

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        # The top has the bottom's shape; a meta-tensor forward would mix meta and CPU blobs.
        return [tuple(bottom_shapes[0])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        channels = shape[1] if x.dim() > 1 else 1
        flat = x.reshape(shape[0], channels, -1)
        if self.use_global_stats:
            factor = batchnorm_scale_tensor(self.scale_factor.reshape(()))
            mean = (self.mean * factor).reshape(1, channels, 1)
            var = (self.variance * factor).reshape(1, channels, 1)
        else:
            mean = flat.mean(dim=(0, 2), keepdim=True)
            var = ((flat - mean) ** 2).mean(dim=(0, 2), keepdim=True)
            if not x.is_meta:
                self._update_running_sums(mean, var, flat.shape[0] * flat.shape[2])
        y = (flat - mean) / torch.sqrt(var + self.eps)
        return y.reshape(shape)

    @torch.no_grad()
    def _update_running_sums(self, mean: torch.Tensor, var: torch.Tensor, m: int) -> None:
        maf = self.moving_average_fraction
        correction = m / (m - 1) if m > 1 else 1.0
        self.scale_factor.mul_(maf).add_(1.0)
        self.mean.mul_(maf).add_(mean.detach().reshape(-1))
        self.variance.mul_(maf).add_(var.detach().reshape(-1) * correction)

    def extra_repr(self) -> str:
        stats = "global" if self.use_global_stats else (
            f"batch, moving_average_fraction={self.moving_average_fraction:g}")
        return f"channels={self.mean.numel()}, eps={self.eps:g}, stats={stats}"


def batch_norm_affine(module: Any, ndim: int) -> Affine | None:
    """BatchNorm with global statistics as y = a * x + b per channel: a = 1/sqrt(var + eps),
    b = -mean * a, mean and var the stored sums times caffe_math.batchnorm_scale; None with
    batch statistics."""
    if not isinstance(module, CaffeBatchNorm) or not module.use_global_stats or ndim < 2:
        return None
    factor = caffe_math.batchnorm_scale(float(module.scale_factor.reshape(-1)[0]))
    mean = module.mean.detach().double() * factor
    var = module.variance.detach().double() * factor
    a = 1.0 / torch.sqrt(var + float(module.eps))
    return a, -mean * a


@register_layer("BatchNorm", blobs=fixed_roles(STATISTIC, STATISTIC, STATISTIC),
                channel_affine=batch_norm_affine, fillers=lambda layer: ())  # caffe_set zeros
def convert_batch_norm(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe BatchNorm (src/caffe/layers/batch_norm_layer.cpp): y = (x - mean)/sqrt(var + eps)
    per channel (axis 1; a 1-axis bottom is one channel). Blobs: mean sum (C), variance sum
    (C), scale_factor (1). use_global_stats (default: phase == TEST) uses blob/scale_factor
    (0 if scale_factor == 0); otherwise batch mean and biased batch variance over N*H*W, and the
    blobs become maf*blob + batch_mean, maf*blob + m/(m-1)*batch_var, maf*scale_factor + 1."""
    ctx.expect_bottoms(1)
    p = layer.param.batch_norm_param
    shape = ctx.bottom_shapes[0]
    if len(shape) == 0:
        raise ctx.error("BatchNorm needs a bottom with at least one axis")
    channels = shape[1] if len(shape) > 1 else 1
    use_global_stats = (p.use_global_stats if p.HasField("use_global_stats")
                        else ctx.phase == caffe_pb2.TEST)
    for i, spec in enumerate(layer.param.param[:3]):
        if spec.lr_mult != 0:
            raise ctx.error(f"param {i} has lr_mult {spec.lr_mult:g}; Caffe refuses to learn "
                            "BatchNorm statistics",
                            "set lr_mult: 0 for all three BatchNorm params (or omit them)")
    ctx.expect_blob_count(3)
    mean = ctx.blob(0, (channels,))
    variance = ctx.blob(1, (channels,))
    scale_factor = ctx.blob(2, (1,))
    return CaffeBatchNorm(mean, variance, scale_factor, p.eps, use_global_stats,
                          p.moving_average_fraction)


# ---- Scale and Bias --------------------------------------------------------------------------


def _covered_axes(ctx: ConvertContext, axis: int, num_axes: int,
                  operand_shape: Shape | None) -> tuple[int, Shape]:
    """Where a Scale/Bias operand lies on bottom[0]: (first axis, operand shape).

    With a learned blob the operand is bottom[0].shape[axis : axis+num_axes] (num_axes -1: to
    the end, 0: a scalar); with a second bottom its own shape decides, and it must equal the
    bottom[0] dims it covers (Caffe broadcasts nothing else). A scalar operand sits at axis 0.
    """
    shape = ctx.bottom_shapes[0]
    first = ctx.axis(axis)
    if operand_shape is None:
        if num_axes < -1:
            raise ctx.error(f"num_axes {num_axes} must be -1 (to the end) or >= 0")
        if num_axes >= 0 and first + num_axes > len(shape):
            raise ctx.error(f"num_axes {num_axes} from axis {first} runs past the "
                            f"{len(shape)}-axis bottom {shape}")
        end = len(shape) if num_axes == -1 else first + num_axes
        operand_shape = tuple(shape[first:end])
    if len(operand_shape) == 0:
        return 0, ()
    covered = tuple(shape[first : first + len(operand_shape)])
    if covered != tuple(operand_shape):
        raise ctx.error(f"operand shape {tuple(operand_shape)} does not match bottom dims "
                        f"{covered} from axis {first} of {shape}",
                        "check axis/num_axes and the second bottom's shape")
    return first, tuple(operand_shape)


def _broadcastable(operand: torch.Tensor, trailing: int) -> torch.Tensor:
    """`operand` shaped to broadcast over the bottom: trailing singleton axes appended (leading
    axes broadcast on their own)."""
    return operand.reshape(tuple(operand.shape) + (1,) * trailing)


class CaffeScale(CaffeModule):
    """y = x * scale (+ bias), the operand covering bottom axes [axis, axis + scale.ndim).

    The scale is the learned `weight` (one bottom) or the second bottom; `bias` is learned.
    """

    def __init__(self, weight: torch.Tensor | None, bias: torch.Tensor | None,
                 trailing: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight) if weight is not None else None
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.caffe_blob_names = tuple(
            name for name, t in (("weight", weight), ("bias", bias)) if t is not None)
        self.trailing = trailing

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        # The top has the bottom's shape; a meta-tensor forward would mix meta and CPU blobs.
        return [tuple(bottom_shapes[0])]

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        factor = self.weight if scale is None else scale
        assert factor is not None
        y = x * _broadcastable(factor, self.trailing)
        if self.bias is not None:
            y = y + _broadcastable(self.bias, self.trailing)
        return y

    def extra_repr(self) -> str:
        what = f"weight={tuple(self.weight.shape)}" if self.weight is not None else "2nd bottom"
        return f"{what}, bias={self.bias is not None}, trailing_axes={self.trailing}"


class CaffeBias(CaffeModule):
    """y = x + bias, the bias (learned, or the second bottom) covering bottom axes
    [axis, axis + bias.ndim)."""

    def __init__(self, bias: torch.Tensor | None, trailing: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.caffe_blob_names = ("bias",) if bias is not None else ()
        self.trailing = trailing

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        # The top has the bottom's shape; a meta-tensor forward would mix meta and CPU blobs.
        return [tuple(bottom_shapes[0])]

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        operand = self.bias if bias is None else bias
        assert operand is not None
        return x + _broadcastable(operand, self.trailing)


def _scale_roles(layer: Layer) -> tuple[str, ...]:
    """A learned scale (one bottom), then a bias with bias_term."""
    scale = (WEIGHT,) if len(layer.bottoms) == 1 else ()
    return scale + ((BIAS,) if layer.param.scale_param.bias_term else ())


def _scale_fillers(layer: Layer) -> tuple[caffe_pb2.FillerParameter, ...]:
    """scale_param.filler (default constant 1) for a learned scale, then bias_filler."""
    p = layer.param.scale_param
    scale = (filler_or_constant(p, "filler", 1.0),)
    return (scale if len(layer.bottoms) == 1 else ()) + (
        (p.bias_filler,) if p.bias_term else ())


def scale_affine(module: Any, ndim: int) -> Affine | None:
    """Scale with one learned per-channel (axis 1) operand as y = s * x + b."""
    if not isinstance(module, CaffeScale) or ndim < 2:
        return None
    w = module.weight
    if w is None or w.dim() != 1 or module.trailing != ndim - 2:
        return None
    a = w.detach().double()
    b = module.bias.detach().double() if module.bias is not None else torch.zeros_like(a)
    return a, b


@register_layer("Scale", blobs=_scale_roles, channel_affine=scale_affine,
                fillers=_scale_fillers)
def convert_scale(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Scale (src/caffe/layers/scale_layer.cpp): y = x * s (+ b) with s broadcast over
    bottom[0] starting at `axis`. One bottom: s is a learned blob of shape
    bottom.shape[axis : axis+num_axes] (num_axes -1 = to the end, 0 = scalar; filler default
    constant 1). Two bottoms: s is bottom[1], whose shape must equal the dims it covers.
    bias_term adds a learned bias of s's shape (an internal Bias layer; blob after s)."""
    ctx.expect_bottoms(1, 2)
    p = layer.param.scale_param
    two = len(layer.bottoms) == 2
    shape = ctx.bottom_shapes[0]
    operand = ctx.bottom_shapes[1] if two else None
    first, scale_shape = _covered_axes(ctx, p.axis, p.num_axes, operand)
    ctx.expect_blob_count((0 if two else 1) + (1 if p.bias_term else 0))
    weight = None
    if not two:
        weight = ctx.blob(0, scale_shape, _scale_fillers(layer)[0])
    bias = ctx.blob(0 if two else 1, scale_shape, p.bias_filler) if p.bias_term else None
    return CaffeScale(weight, bias, len(shape) - first - len(scale_shape))


def _bias_roles(layer: Layer) -> tuple[str, ...]:
    """A learned bias with one bottom; none when the bias is the second bottom."""
    return (BIAS,) if len(layer.bottoms) == 1 else ()


def bias_affine(module: Any, ndim: int) -> Affine | None:
    """Bias with one learned per-channel (axis 1) operand as y = 1 * x + b."""
    if not isinstance(module, CaffeBias) or ndim < 2:
        return None
    bias = module.bias
    if bias is None or bias.dim() != 1 or module.trailing != ndim - 2:
        return None
    b = bias.detach().double()
    return torch.ones_like(b), b


def _bias_fillers(layer: Layer) -> tuple[caffe_pb2.FillerParameter, ...]:
    """bias_param.filler (default constant 0) for a learned bias."""
    return (layer.param.bias_param.filler,) if len(layer.bottoms) == 1 else ()


@register_layer("Bias", blobs=_bias_roles, channel_affine=bias_affine, fillers=_bias_fillers)
def convert_bias(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Bias (src/caffe/layers/bias_layer.cpp): y = x + b with b broadcast over bottom[0]
    starting at `axis` (bias_param, default axis 1, num_axes 1). One bottom: b is a learned blob
    of shape bottom.shape[axis : axis+num_axes] (-1 = to the end, 0 = scalar; filler default
    constant 0); two bottoms: b is bottom[1], whose shape must equal the dims it covers."""
    ctx.expect_bottoms(1, 2)
    p = layer.param.bias_param
    two = len(layer.bottoms) == 2
    shape = ctx.bottom_shapes[0]
    operand = ctx.bottom_shapes[1] if two else None
    first, bias_shape = _covered_axes(ctx, p.axis, p.num_axes, operand)
    ctx.expect_blob_count(0 if two else 1)
    bias = None if two else ctx.blob(0, bias_shape, p.filler)
    return CaffeBias(bias, len(shape) - first - len(bias_shape))


# ---- MVN -------------------------------------------------------------------------------------


class CaffeMVN(CaffeModule):
    """Mean (and variance) normalisation per sample, per channel unless across_channels:
    y = x - mean, then y / (sqrt(mean(y^2)) + eps) -- eps is added to the standard deviation."""

    def __init__(self, normalize_variance: bool, across_channels: bool, eps: float) -> None:
        super().__init__()
        self.normalize_variance = normalize_variance
        self.across_channels = across_channels
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        # Caffe's legacy channels(): 1 for a bottom with a single axis.
        channels = shape[1] if len(shape) > 1 else 1
        groups = shape[0] if self.across_channels else shape[0] * channels
        flat = x.reshape(groups, -1)
        centred = flat - flat.mean(dim=1, keepdim=True)
        if self.normalize_variance:
            std = torch.sqrt((centred * centred).mean(dim=1, keepdim=True))
            centred = centred / (std + self.eps)
        return centred.reshape(shape)

    def extra_repr(self) -> str:
        return (f"normalize_variance={self.normalize_variance}, "
                f"across_channels={self.across_channels}, eps={self.eps:g}")


@register_layer("MVN")
def convert_mvn(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe MVN (src/caffe/layers/mvn_layer.cpp): subtract the mean over H x W of each
    (sample, channel) -- over C x H x W of each sample when across_channels -- and, when
    normalize_variance (default), divide by sqrt(E[(x - mean)^2]) + eps (eps default 1e-9,
    added to the std, not to the variance)."""
    ctx.expect_bottoms(1)
    p = layer.param.mvn_param
    shape = ctx.bottom_shapes[0]
    if not 1 <= len(shape) <= 4:
        raise ctx.error(f"MVN works on bottoms of 1 to 4 axes (num, channels, height, width), "
                        f"got {shape}")
    return CaffeMVN(p.normalize_variance, p.across_channels, p.eps)
