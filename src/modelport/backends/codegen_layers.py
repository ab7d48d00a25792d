"""Source emitters for the built-in layer modules (see modelport.backends.codegen).

Each emitter turns a converted module into the constructor expression written in `model.py`,
reading the module's attributes (so the generated net computes exactly what the live one does)
and naming the plain-torch helper snippets it needs. Standard PyTorch modules are used where
they already compute Caffe's function (Conv2d with axis 1, ReLU, Softmax, ...).
"""

from __future__ import annotations

from torch import nn

from modelport.backends.codegen_base import Emitted, call, lit, register_emitter, register_helper
from modelport.backends.portable import ConvolutionReLU, ConvolutionSum
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Layer
from modelport.layers.conv import CaffeConvolution
from modelport.layers.pooling import CaffePooling, CaffeSPP

PP = caffe_pb2.PoolingParameter
_POOL_NAMES: dict[int, str] = {PP.MAX: "MAX", PP.AVE: "AVE", PP.STOCHASTIC: "STOCHASTIC"}

# ---------------------------------------------------------------------------------------------
# Convolution / Deconvolution

register_helper("CaffeConvolution", '''
    class CaffeConvolution(nn.Module):
        """Caffe (De)Convolution over the axes after `axis`; leading axes are folded into the
        batch (Caffe's `axis` != 1)."""

        def __init__(self, weight_shape, bias, stride, pad, dilation, group, axis, transposed):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(weight_shape))
            self.bias = nn.Parameter(torch.empty(bias)) if bias else None
            self.stride, self.pad, self.dilation = stride, pad, dilation
            self.group, self.axis, self.transposed = group, axis, transposed

        def forward(self, x):
            lead = x.shape[: self.axis]
            y = x.reshape((-1,) + tuple(x.shape[self.axis:]))
            n = len(self.stride)
            if self.transposed:
                fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1]
                y = fn(y, self.weight, self.bias, self.stride, self.pad, 0, self.group,
                       self.dilation)
            else:
                fn = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
                y = fn(y, self.weight, self.bias, self.stride, self.pad, self.dilation, self.group)
            return y.reshape(tuple(lead) + tuple(y.shape[1:]))
''')


@register_emitter(CaffeConvolution)
def emit_convolution(layer: Layer, m: nn.Module) -> Emitted:
    """model.py's constructor for a CaffeConvolution: torch's nn.ConvNd / nn.ConvTranspose{N}d (axis
    1, 1-3 spatial axes), else the copied CaffeConvolution class."""
    assert isinstance(m, CaffeConvolution)
    w = tuple(int(d) for d in m.weight.shape)
    nsp = len(m.stride)
    if m.axis == 1 and nsp in (1, 2, 3):
        kernel = w[2:]
        if m.transposed:
            cls = f"nn.ConvTranspose{nsp}d"
            cin, cout = w[0], w[1] * m.group
        else:
            cls = f"nn.Conv{nsp}d"
            cin, cout = w[1] * m.group, w[0]
        kwargs: dict[str, object] = {"stride": m.stride, "padding": m.pad}
        if any(d != 1 for d in m.dilation):
            kwargs["dilation"] = m.dilation
        if m.group != 1:
            kwargs["groups"] = m.group
        if m.bias is None:
            kwargs["bias"] = False
        return Emitted(call(cls, cin, cout, kernel, **kwargs))
    bias = int(m.bias.shape[0]) if m.bias is not None else 0
    return Emitted(call("CaffeConvolution", w, bias, m.stride, m.pad, m.dilation, m.group,
                        m.axis, m.transposed), ("CaffeConvolution",))


# ---------------------------------------------------------------------------------------------
# Pooling / SPP

register_helper("caffe_pooled_size", '''
    def caffe_pooled_size(size, kernel, stride, pad, ceil, any_pad):
        """Caffe's pooled length (pooling_layer.cpp): ceil (or floor) of (size + 2*pad - kernel)
        / stride, plus 1; when the layer has any padding, a last window starting in the
        bottom/right padding is dropped. (With no padding Caffe keeps a window starting past the
        image, which PyTorch's ceil_mode drops.)"""
        span = size + 2 * pad - kernel
        out = (-(-span // stride) if ceil else span // stride) + 1
        if any_pad and (out - 1) * stride >= size + pad:
            out -= 1
        return out
''')

register_helper("CaffePooling", '''
    class CaffePooling(nn.Module):
        """Caffe 2-D pooling: Caffe's output size; MAX pads with -FLT_MAX; AVE divides each window
        sum by the window clipped to [-pad, size + pad) (padding counts, overflow does not);
        STOCHASTIC (TEST) gives sum(x^2) / sum(x) over windows placed without `pad`."""

        FLT_MAX = 3.4028234663852886e38
        FLT_MIN = 1.1754943508222875e-38

        def __init__(self, method, kernel, stride, pad, ceil, with_mask=False):
            super().__init__()
            self.method, self.kernel, self.stride, self.pad = method, kernel, stride, pad
            self.ceil, self.with_mask = ceil, with_mask

        def forward(self, x):
            h, w = int(x.shape[-2]), int(x.shape[-1])
            kernel = self.kernel or (h, w)  # None: global pooling
            any_pad = any(self.pad)
            out = tuple(caffe_pooled_size(n, k, s, p, self.ceil, any_pad)
                        for n, k, s, p in zip((h, w), kernel, self.stride, self.pad))
            right = tuple(max(0, (o - 1) * s + k - n - p)
                          for o, s, k, n, p in zip(out, self.stride, kernel, (h, w), self.pad))
            ph, pw = self.pad
            unpadded = ph == pw == right[0] == right[1] == 0  # no copy of the bottom needed
            if self.method == "MAX":
                padded = x if unpadded else F.pad(x, (pw, right[1], ph, right[0]),
                                                  value=-self.FLT_MAX)
                if self.with_mask:  # second top: argmax as a flat index into the H x W bottom
                    y, idx = F.max_pool2d(padded, kernel, self.stride, return_indices=True)
                    y, idx = y[..., : out[0], : out[1]], idx[..., : out[0], : out[1]]
                    wp = padded.shape[-1]
                    return y, ((idx // wp - ph) * w + idx % wp - pw).to(x.dtype)
                return F.max_pool2d(padded, kernel, self.stride)[..., : out[0], : out[1]]
            area = float(kernel[0] * kernel[1])
            if self.method == "AVE":
                # mean over the (explicitly padded) window, divided by divisor / area: Caffe's
                # window sum / divisor
                padded = x if unpadded else F.pad(x, (pw, right[1], ph, right[0]))
                means = F.avg_pool2d(padded, kernel, self.stride)[..., : out[0], : out[1]]
                rows = [min(i * self.stride[0] - ph + kernel[0], h + ph) - (i * self.stride[0] - ph)
                        for i in range(out[0])]
                cols = [min(j * self.stride[1] - pw + kernel[1], w + pw) - (j * self.stride[1] - pw)
                        for j in range(out[1])]
                scale = 1.0 / area
                divisor = torch.tensor([[r * c * scale for c in cols] for r in rows],
                                       dtype=x.dtype, device=x.device)
                return means / divisor
            padded = F.pad(x, (0, pw + right[1], 0, ph + right[0]))
            s1 = F.avg_pool2d(padded, kernel, self.stride)[..., : out[0], : out[1]] * area
            s2 = F.avg_pool2d(padded * padded, kernel, self.stride)[..., : out[0], : out[1]] * area
            return s2 / (s1 + self.FLT_MIN)
''', needs=("caffe_pooled_size",))

register_helper("CaffeSPP", '''
    class CaffeSPP(nn.Module):
        """Caffe SPP: each pyramid level pooled, flattened per sample, concatenated."""

        def __init__(self, levels):
            super().__init__()
            self.levels = nn.ModuleList(levels)

        def forward(self, x):
            flat = [level(x).reshape(x.shape[0], -1) for level in self.levels]
            return torch.cat(flat, dim=1) if len(flat) > 1 else flat[0]
''', needs=("CaffePooling",))


def _pooling_expr(m: CaffePooling) -> str:
    kwargs = {"with_mask": True} if m.with_mask else {}
    return call("CaffePooling", _POOL_NAMES[m.method], m.kernel, m.stride, m.pad, m.ceil,
                **kwargs)


@register_emitter(CaffePooling)
def emit_pooling(layer: Layer, m: nn.Module) -> Emitted:
    """model.py's constructor for a CaffePooling (the copied class: Caffe's output size and padding
    rules)."""
    assert isinstance(m, CaffePooling)
    return Emitted(_pooling_expr(m), ("CaffePooling",))


@register_emitter(CaffeSPP)
def emit_spp(layer: Layer, m: nn.Module) -> Emitted:
    """model.py's constructor for a CaffeSPP: its pyramid levels as CaffePooling constructors."""
    assert isinstance(m, CaffeSPP)
    levels = ", ".join(_pooling_expr(level) for level in m.levels)  # type: ignore[arg-type]
    return Emitted(f"CaffeSPP([{levels}])", ("CaffeSPP",))


__all__ = ["emit_convolution", "emit_pooling", "emit_spp", "lit"]


# ---------------------------------------------------------------------------------------------
# Portable forms of fused layers (modelport.backends.portable). An optimised module
# (modelport.optimize) is written as the form its `portable()` returns (see emit_module).

register_helper("Conv2dReLU", '''
    class Conv2dReLU(nn.Conv2d):
        """nn.Conv2d followed by Caffe's ReLU (negative_slope 0), applied in place."""

        def forward(self, x):
            return F.relu_(super().forward(x))
''')


@register_emitter(ConvolutionReLU)
def emit_convolution_relu(layer: Layer, m: nn.Module) -> Emitted:
    """The plain convolution with the ReLU after it; Conv2dReLU for nn.Conv2d (same state dict)."""
    assert isinstance(m, ConvolutionReLU)
    plain = emit_convolution(layer, m)
    # axis 1, 2-D: only those get a fused ReLU (InferenceConvolution.eligible)
    assert plain.expr.startswith("nn.Conv2d("), plain.expr
    return Emitted("Conv2dReLU(" + plain.expr[len("nn.Conv2d("):],
                   plain.helpers + ("Conv2dReLU",))


register_helper("ConvolutionSum", '''
    class ConvolutionSum(nn.Module):
        """A convolution whose output is added to a second input (Caffe Eltwise SUM with
        coefficients 1), then Caffe's ReLU when `relu`: relu?(conv(x) + other)."""

        def __init__(self, conv, relu):
            super().__init__()
            self.conv, self.relu = conv, relu

        def forward(self, x, other):
            y = self.conv(x) + other
            return F.relu_(y) if self.relu else y
''')


@register_emitter(ConvolutionSum)
def emit_convolution_sum(layer: Layer, m: nn.Module) -> Emitted:
    assert isinstance(m, ConvolutionSum)
    conv = emit_convolution(layer, m.conv)
    return Emitted(f"ConvolutionSum({conv.expr}, {m.relu!r})", conv.helpers + ("ConvolutionSum",))
