"""Pooling (MAX, AVE, STOCHASTIC at test; global) and SPP, with Caffe's output size rules."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modelport import caffe_math
from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext, Shape
from modelport.layers.registry import register_layer
from modelport.schema import caffe_pb2

PP = caffe_pb2.PoolingParameter


class CaffePooling(CaffeModule):
    """2-D pooling that reproduces Caffe's window placement, output size and AVE divisor.

    The bottom is padded explicitly (left by `pad`, right as far as Caffe's last window
    reaches) and pooled without implicit padding: MAX pads with -FLT_MAX (Caffe's initial
    value), AVE sums zero-padded windows and divides by Caffe's per-window count.
    """

    def __init__(self, method: int, kernel: Shape | None, stride: Shape, pad: Shape,
                 ceil: bool, with_mask: bool = False) -> None:
        super().__init__()
        self.method = method
        self.kernel = kernel  # None: global pooling over the whole H x W
        self.stride = stride
        self.pad = pad
        self.ceil = ceil
        self.with_mask = with_mask

    def _geometry(self, h: int, w: int) -> tuple[Shape, Shape, Shape]:
        kernel = self.kernel or (h, w)
        any_pad = any(self.pad)
        out = (
            caffe_math.pooled_size(h, kernel[0], self.stride[0], self.pad[0], self.ceil, any_pad),
            caffe_math.pooled_size(w, kernel[1], self.stride[1], self.pad[1], self.ceil, any_pad),
        )
        right = tuple(
            max(0, (o - 1) * s + k - n - p)
            for o, s, k, n, p in zip(out, self.stride, kernel, (h, w), self.pad)
        )
        return kernel, out, right

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        kernel, out, right = self._geometry(h, w)
        ph, pw = self.pad
        unpadded = ph == pw == right[0] == right[1] == 0  # no copy of the bottom needed
        if self.method == PP.MAX:
            padded = x if unpadded else F.pad(x, (pw, right[1], ph, right[0]),
                                              value=-caffe_math.FLT_MAX)
            if self.with_mask:
                y, idx = F.max_pool2d(padded, kernel, self.stride, return_indices=True)
                y, idx = y[..., : out[0], : out[1]], idx[..., : out[0], : out[1]]
                wp = padded.shape[-1]
                rows, cols = idx // wp - ph, idx % wp - pw
                return y, (rows * w + cols).to(x.dtype)
            return F.max_pool2d(padded, kernel, self.stride)[..., : out[0], : out[1]]
        if self.method == PP.AVE:
            # Every window lies inside the explicitly padded bottom, so avg_pool2d's mean is
            # sum / (kh*kw); dividing by Caffe's divisor / (kh*kw) gives Caffe's sum / divisor.
            # (Not divisor_override: ONNX AveragePool has no such attribute and torch's ONNX
            # exporter silently drops it.)
            padded = x if unpadded else F.pad(x, (pw, right[1], ph, right[0]))
            means = F.avg_pool2d(padded, kernel, self.stride)[..., : out[0], : out[1]]
            return means / self._divisor(h, w, kernel, out, x, scale=1.0 / (kernel[0] * kernel[1]))
        # STOCHASTIC, TEST phase (Caffe's GPU StoPoolForwardTest): sum(x^2) / sum(x) over the
        # window clipped to the image; Caffe ignores `pad` when placing these windows.
        padded = F.pad(x, (0, pw + right[1], 0, ph + right[0]))
        area = float(kernel[0] * kernel[1])
        s1 = F.avg_pool2d(padded, kernel, self.stride)[..., : out[0], : out[1]] * area
        s2 = F.avg_pool2d(padded * padded, kernel, self.stride)[..., : out[0], : out[1]] * area
        return s2 / (s1 + caffe_math.FLT_MIN)

    def _divisor(self, h: int, w: int, kernel: Shape, out: Shape, like: torch.Tensor,
                 scale: float = 1.0) -> torch.Tensor:
        """Caffe's per-window AVE divisor (times `scale`), an out_h x out_w constant computed
        in Python from static shapes (a Constant node when exported)."""
        rows = [caffe_math.ave_pool_divisor(i, h, kernel[0], self.stride[0], self.pad[0])
                for i in range(out[0])]
        cols = [caffe_math.ave_pool_divisor(j, w, kernel[1], self.stride[1], self.pad[1])
                for j in range(out[1])]
        table = [[r * c * scale for c in cols] for r in rows]
        return torch.tensor(table, dtype=like.dtype, device=like.device)

    def extra_repr(self) -> str:
        names: dict[int, str] = {PP.MAX: "MAX", PP.AVE: "AVE", PP.STOCHASTIC: "STOCHASTIC"}
        return (f"{names[self.method]} kernel={self.kernel or 'global'}, stride={self.stride}, "
                f"pad={self.pad}, round={'ceil' if self.ceil else 'floor'}")


def pooling_geometry(p: caffe_pb2.PoolingParameter, ctx: ConvertContext,
                     ) -> tuple[Shape | None, Shape, Shape]:
    """Kernel (None when global), stride and pad of a PoolingParameter, Caffe's checks included
    (caffe_math.pooling_geometry, refused as the layer's ShapeError)."""
    return caffe_math.pooling_geometry(p, ctx.error)


@register_layer("Pooling")
def convert_pooling(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Pooling (layers/pooling_layer.cpp): output `ceil((in + 2*pad - k)/stride) + 1`
    (`round_mode: FLOOR` or a fork's `ceil_mode: false` round down), minus a last window starting
    in the padding when pad > 0; MAX ignores padding; AVE divides by the window clipped to
    [-pad, in+pad); global_pooling; MAX may output its argmax mask as a second top; STOCHASTIC
    uses the GPU TEST rule sum(x^2)/sum(x) (training-time sampling is rejected)."""
    ctx.expect_bottoms(1)
    p = layer.param.pooling_param
    shape = ctx.bottom_shapes[0]
    if len(shape) != 4:
        raise ctx.error(f"Caffe pooling needs a 4-D N x C x H x W bottom, got {shape}")
    if len(layer.tops) == 2 and p.pool != PP.MAX:
        raise ctx.error("only MAX pooling has a second (mask) top")
    if len(layer.tops) not in (1, 2):
        raise ctx.error(f"has {len(layer.tops)} tops; pooling gives 1 (or 2 for MAX with mask)")
    if p.pool == PP.STOCHASTIC and ctx.train:
        raise ctx.error("STOCHASTIC pooling samples randomly in TRAIN phase; not supported",
                        "use MAX or AVE pooling for training")
    kernel, stride, pad = pooling_geometry(p, ctx)
    if any(pad) and p.pool == PP.STOCHASTIC:
        raise ctx.error("Caffe allows padding only for MAX and AVE pooling")
    ceil = p.round_mode == PP.CEIL and p.ceil_mode
    if kernel is not None:
        for n, k, pd, axis in zip(shape[2:], kernel, pad, "hw"):
            if n + 2 * pd < k:
                raise ctx.error(f"kernel {kernel[0]}x{kernel[1]} is larger than the "
                                f"{shape[2] + 2 * pad[0]}x{shape[3] + 2 * pad[1]} padded input "
                                f"(axis {axis})", "check input_shape")
    return CaffePooling(p.pool, kernel, stride, pad, ceil, with_mask=len(layer.tops) == 2)


class CaffeSPP(CaffeModule):
    """Spatial pyramid pooling: for level l, a 2^l x 2^l grid of pooling windows, each flattened
    and concatenated along the channel axis (layers/spp_layer.cpp)."""

    def __init__(self, levels: list[CaffePooling]) -> None:
        super().__init__()
        self.levels = nn.ModuleList(levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        flat = [level(x).reshape(n, -1) for level in self.levels]
        return torch.cat(flat, dim=1) if len(flat) > 1 else flat[0]


@register_layer("SPP")
def convert_spp(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe SPP (layers/spp_layer.cpp): pyramid_height levels; level l pools with kernel
    ceil(in/2^l), pad (kernel*2^l - in + 1)/2, stride = kernel, then flattens and concatenates."""
    ctx.expect_bottoms(1)
    p = layer.param.spp_param
    shape = ctx.bottom_shapes[0]
    if len(shape) != 4:
        raise ctx.error(f"SPP needs a 4-D bottom, got {shape}")
    if p.pyramid_height < 1:
        raise ctx.error("pyramid_height must be at least 1")
    if p.pool == caffe_pb2.SPPParameter.STOCHASTIC:
        raise ctx.error("STOCHASTIC SPP is not supported", "use MAX or AVE")
    h, w = shape[2], shape[3]
    levels = []
    for level in range(p.pyramid_height):
        bins = 2**level
        kh, kw = -(-h // bins), -(-w // bins)
        ph, pw = (kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2
        method = PP.MAX if p.pool == caffe_pb2.SPPParameter.MAX else PP.AVE
        levels.append(CaffePooling(method, (kh, kw), (kh, kw), (ph, pw), True))
    return CaffeSPP(levels)
