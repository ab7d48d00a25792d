"""Inference optimisation of a converted net, keeping Caffe's results (checked by the tests
against the Caffe goldens).

`optimize_for_inference(net)` returns an optimised copy of a CaffeNet:

- BatchNorm (global statistics), Scale and Bias with one per-channel learned operand, and
  Power with power 1 are folded into the preceding Convolution / InnerProduct, when the blob
  between them is read by nothing else (and is not a net output);
- such per-channel affine layers that follow something else are merged into one multiply-add;
- a ReLU (plain or leaky) reading only a convolution's output is fused into it (applied in place
  on the convolution's output);
- Dropout (identity at inference) and Silence are dropped;
- convolutions (with their fused ReLU) and inner products run on oneDNN in eager CPU inference
  (modelport.optimize.onednn: weights reordered once, ReLU as a post-op, multi-threaded
  batch-1 inner products); traced, compiled and exported graphs keep the standard ops;
- optionally, 3x3 stride-1 convolutions by Winograd F(4x4, 3x3) in eager CPU inference where
  it is faster (modelport.optimize.winograd), 4-D weights in channels_last memory format, and
  `torch.compile`.

The copy is still a CaffeNet (same inputs, outputs and blob names for every blob that survives),
so it exports to ONNX / TorchScript like the original.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modelport.backends.torch_module import CaffeNet
from modelport.errors import ConfigError
from modelport.ir import Layer
from modelport.layers.activation import CaffeDropout, CaffeReLU
from modelport.layers.base import CaffeModule
from modelport.layers.conv import CaffeConvolution
from modelport.layers.inner_product import CaffeInnerProduct
from modelport.layers.registry import facts, layer_types
from modelport.optimize import onednn
from modelport.optimize.onednn import (
    InferenceConvolution,
    InferenceConvolutionSum,
    InferenceInnerProduct,
)

Affine = tuple[torch.Tensor, torch.Tensor]  # y = a * x + b per channel (axis 1), float64


class ChannelAffine(CaffeModule):
    """y = x * scale + shift along axis 1: several folded BatchNorm/Scale/Bias/Power layers."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, ndim: int) -> None:
        super().__init__()
        view = (1, -1) + (1,) * (ndim - 2)
        self.register_buffer("scale", scale.to(torch.float32).reshape(view))
        self.register_buffer("shift", shift.to(torch.float32).reshape(view))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)


class FusedReLU(CaffeModule):
    """A convolution / inner product followed by Caffe's ReLU, applied in place on its output
    (max(x, 0) + negative_slope * min(x, 0))."""

    def __init__(self, inner: nn.Module, negative_slope: float) -> None:
        super().__init__()
        self.inner = inner
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        if self.negative_slope == 0.0:
            return F.relu_(y)
        return F.leaky_relu_(y, self.negative_slope)


@dataclass
class OptimizeReport:
    """Which layers were folded, fused or dropped (Caffe layer names)."""

    folded: dict[str, list[str]] = field(default_factory=dict)  # conv/ip -> folded layers
    merged: dict[str, list[str]] = field(default_factory=dict)  # first affine -> merged ones
    fused_relu: dict[str, str] = field(default_factory=dict)  # conv/ip -> relu
    dropped: list[str] = field(default_factory=list)
    fused_sum: dict[str, str] = field(default_factory=dict)  # conv -> Eltwise SUM (eager)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON data (conversion.json's "optimized" entry)."""
        return {"folded": dict(self.folded), "merged": dict(self.merged),
                "fused_relu": dict(self.fused_relu), "dropped": list(self.dropped),
                "fused_sum": dict(self.fused_sum)}

    def summary(self) -> str:
        n_fold = sum(len(v) for v in self.folded.values())
        n_merge = sum(len(v) for v in self.merged.values())
        sums = f", fused {len(self.fused_sum)} residual sum(s)" if self.fused_sum else ""
        return (f"folded {n_fold} layer(s) into convolutions, merged {n_merge} affine layer(s), "
                f"fused {len(self.fused_relu)} ReLU(s), dropped {len(self.dropped)} layer(s)"
                f"{sums}")


def channel_affine(module: Any, ndim: int) -> Affine | None:
    """(a, b) with module(x) == a * x + b per channel of axis 1, or None when the module is not
    such a map (batch statistics, an operand over other axes, a second bottom, power != 1).
    The forms are the ones layer types declare where they are registered (LayerFacts)."""
    if ndim < 2:
        return None
    for type_name in layer_types():
        form = facts(type_name).channel_affine
        affine = form(module, ndim) if form is not None else None
        if affine is not None:
            return affine
    return None


def _compose(first: Affine, then: Affine, channels: int) -> Affine:
    a1, b1 = (t.expand(channels) for t in first)
    a2, b2 = (t.expand(channels) for t in then)
    return a2 * a1, a2 * b1 + b2


def _fold_into(module: Any, affine: Affine) -> nn.Module | None:
    """A copy of a convolution / inner product with `affine` applied to its output channels."""
    a, b = affine
    # Exactly a convolution: an optimised one may already apply a ReLU after its output.
    if type(module) is CaffeConvolution and not module.transposed and module.axis == 1:
        out_channels = module.weight.shape[0]
        a, b = a.expand(out_channels), b.expand(out_channels)
        w = module.weight.detach().double() * a.reshape((-1,) + (1,) * (module.weight.dim() - 1))
        old_bias = (module.bias.detach().double() if module.bias is not None
                    else torch.zeros(out_channels, dtype=torch.float64))
        return CaffeConvolution(w.float(), (old_bias * a + b).float(), module.stride,
                                module.pad, module.dilation, module.group, module.axis, False)
    if isinstance(module, CaffeInnerProduct) and module.axis == 1:
        w = module.weight.detach().double()
        n_out = w.shape[1] if module.transpose else w.shape[0]
        a, b = a.expand(n_out), b.expand(n_out)
        w = w * (a[None, :] if module.transpose else a[:, None])
        old_bias = (module.bias.detach().double() if module.bias is not None
                    else torch.zeros(n_out, dtype=torch.float64))
        return CaffeInnerProduct(w.float(), (old_bias * a + b).float(), module.axis,
                                 module.transpose)
    return None


class _Graph:
    """The run order of a CaffeNet copy, edited in place."""

    def __init__(self, net: CaffeNet) -> None:
        self.net = net
        self.order: list[tuple[Layer, str]] = list(net.run_order)
        self.outputs = set(net.output_names)

    def module(self, i: int) -> Any:
        return self.net._modules[self.order[i][1]]

    def next_user(self, i: int, blob: str) -> int | None:
        """The first layer after position i that reads or writes `blob`."""
        for j in range(i + 1, len(self.order)):
            layer = self.order[j][0]
            if blob in layer.bottoms or blob in layer.tops:
                return j
        return None

    def read_after(self, i: int, blob: str) -> bool:
        """Whether `blob`'s current version (after position i) is read by a later layer."""
        for j in range(i + 1, len(self.order)):
            layer = self.order[j][0]
            if blob in layer.bottoms:
                return True
            if blob in layer.tops:
                return False
        return False

    def exclusive_consumer(self, i: int, blob: str) -> int | None:
        """Position of the layer that alone consumes the value position i writes to `blob`:
        it reads only `blob`, writes one top, and if that top is another blob, nothing else
        reads `blob` afterwards and `blob` is not a net output."""
        j = self.next_user(i, blob)
        if j is None:
            return None
        layer = self.order[j][0]
        if layer.bottoms != (blob,) or len(layer.tops) != 1:
            return None
        top = layer.tops[0]
        if top != blob and (blob in self.outputs or self.read_after(j, blob)):
            return None
        return j

    def absorb(self, i: int, j: int, module: nn.Module | None = None) -> None:
        """Layer j disappears; layer i now writes j's top (and becomes `module`)."""
        layer, key = self.order[i]
        absorbed = self.order[j][0]
        tops = tuple(absorbed.tops[0] if t == absorbed.bottoms[0] else t for t in layer.tops)
        self.order[i] = (replace(layer, tops=tops), key)
        if module is not None:
            self.net._modules[key] = module
        del self.net._modules[self.order[j][1]]
        del self.order[j]


def _drop_identity_layers(g: _Graph, report: OptimizeReport) -> None:
    i = 0
    while i < len(g.order):
        layer, key = g.order[i]
        module = g.net._modules[key]
        drop = False
        if layer.type == "Silence" and not layer.tops:
            drop = True
        elif isinstance(module, CaffeDropout) and \
                len(layer.bottoms) == 1 and len(layer.tops) == 1:
            src, top = layer.bottoms[0], layer.tops[0]
            if top == src:
                drop = True
            elif top not in g.outputs:
                # Later readers of `top` (until it is rewritten) read `src` instead, provided
                # `src` is not rewritten before them.
                drop = True
                renamed = []
                for j in range(i + 1, len(g.order)):
                    later, later_key = g.order[j]
                    if src in later.tops and g.read_after(j - 1, top):
                        drop = False
                        break
                    renamed.append((j, replace(later, bottoms=tuple(
                        src if b == top else b for b in later.bottoms)), later_key))
                    if top in later.tops:
                        break
                if drop:
                    for j, new_layer, later_key in renamed:
                        g.order[j] = (new_layer, later_key)
        if drop:
            report.dropped.append(layer.name)
            del g.net._modules[key]
            del g.order[i]
            continue
        i += 1


def _fold_chains(g: _Graph, report: OptimizeReport) -> None:
    shapes = g.net.blob_shapes
    i = 0
    while i < len(g.order):
        layer, _key = g.order[i]
        module = g.module(i)
        if len(layer.tops) != 1 or len(layer.bottoms) != 1:
            i += 1
            continue
        foldable = _fold_into(module, (torch.ones(1, dtype=torch.float64),
                                       torch.zeros(1, dtype=torch.float64))) is not None
        top = layer.tops[0]
        ndim = len(shapes.get(top, ()))
        channels = shapes[top][1] if ndim >= 2 else 0
        own = channel_affine(module, ndim) if not foldable else None
        if not foldable and own is None:
            i += 1
            continue
        total: Affine = (own if own is not None else
                         (torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)))
        absorbed: list[str] = []
        while True:
            cur = g.order[i][0].tops[0]
            j = g.exclusive_consumer(i, cur)
            if j is None:
                break
            nxt = g.module(j)
            affine = channel_affine(nxt, ndim)
            if affine is None:
                break
            total = _compose(total, affine, channels)
            absorbed.append(g.order[j][0].name)
            g.absorb(i, j)
        if absorbed:
            if foldable:
                folded = _fold_into(module, total)
                assert folded is not None
                g.net._modules[g.order[i][1]] = folded
                report.folded[layer.name] = absorbed
            else:
                g.net._modules[g.order[i][1]] = ChannelAffine(*total, ndim)
                report.merged[layer.name] = absorbed
        if foldable:
            cur = g.order[i][0].tops[0]
            j = g.exclusive_consumer(i, cur)
            if j is not None and isinstance(g.module(j), CaffeReLU):
                relu_layer = g.order[j][0]
                fused = FusedReLU(g.module(i), float(g.module(j).negative_slope))
                g.absorb(i, j, fused)
                report.fused_relu[layer.name] = relu_layer.name
        i += 1


def _use_onednn_kernels(g: _Graph, winograd: str | None) -> None:
    """Swap convolutions (with a fused ReLU, when it has slope 0) and inner products for their
    oneDNN eager-inference versions (same parameters, same results within rounding)."""
    from modelport.optimize.winograd import Policy, WinogradConvolution

    policy: Policy = "always" if winograd == "always" else "auto"
    for _layer, key in g.order:
        module = g.net._modules[key]
        relu = isinstance(module, FusedReLU) and module.negative_slope == 0.0
        inner: Any = module.inner if isinstance(module, FusedReLU) else module
        fast: nn.Module | None = None
        if isinstance(inner, (InferenceConvolution, InferenceInnerProduct,
                              InferenceConvolutionSum)):
            continue  # optimised before
        if InferenceInnerProduct.eligible(inner):
            fast = InferenceInnerProduct(inner.weight, inner.bias, 1, False)
        elif winograd and WinogradConvolution.eligible(inner):
            fast = WinogradConvolution(inner, policy, relu)
        elif InferenceConvolution.eligible(inner):
            fast = InferenceConvolution(inner, relu)
        if fast is None:
            continue
        if isinstance(module, FusedReLU) and not (relu and isinstance(fast,
                                                                      InferenceConvolution)):
            module.inner = fast  # leaky ReLU, or an inner product: the wrapper applies it
        else:
            g.net._modules[key] = fast


def _fuse_residual_sums(g: _Graph, report: OptimizeReport) -> None:
    """conv -> Eltwise SUM (coefficients 1, two bottoms) [-> ReLU]: when the convolution's
    output feeds only that sum and the other bottom is ready before the convolution runs, the
    convolution computes the sum (and the ReLU) itself (oneDNN post-ops)."""
    from modelport.formats.caffe import caffe_pb2
    from modelport.layers.eltwise import CaffeEltwise
    from modelport.optimize.onednn import InferenceConvolutionSum

    j = 0
    while j < len(g.order):
        layer, key = g.order[j]
        sum_module = g.net._modules[key]
        j += 1
        if not (isinstance(sum_module, CaffeEltwise) and len(layer.bottoms) == 2
                and sum_module.operation == caffe_pb2.EltwiseParameter.SUM
                and all(c == 1.0 for c in sum_module.coeffs) and len(layer.tops) == 1):
            continue
        for blob, other in (layer.bottoms, layer.bottoms[::-1]):
            i = _writer_before(g, j - 1, blob)
            if i is None or not _fusable_into(g, i, j - 1, blob, other, layer.tops[0]):
                continue
            conv_layer, conv_key = g.order[i]
            fused = InferenceConvolutionSum(g.module(i), relu=False)
            g.order[i] = (replace(conv_layer, bottoms=(conv_layer.bottoms[0], other),
                                  tops=layer.tops), conv_key)
            g.net._modules[conv_key] = fused
            del g.net._modules[key]
            del g.order[j - 1]
            report.fused_sum[conv_layer.name] = layer.name
            r = g.exclusive_consumer(i, layer.tops[0])
            if r is not None and isinstance(g.module(r), CaffeReLU) \
                    and float(g.module(r).negative_slope) == 0.0:
                fused.relu = True
                report.fused_relu[conv_layer.name] = g.order[r][0].name
                g.absorb(i, r)
            j = i + 1
            break


def _writer_before(g: _Graph, j: int, blob: str) -> int | None:
    """Position of the last layer before position j that writes `blob`."""
    for i in range(j - 1, -1, -1):
        if blob in g.order[i][0].tops:
            return i
    return None


def _fusable_into(g: _Graph, i: int, j: int, blob: str, other: str, top: str) -> bool:
    """Whether the sum at position j of `blob` (written by a plain oneDNN convolution at i) and
    `other` into `top` can be computed by that convolution: nothing between them touches
    `blob` or `top` or rewrites `other` (final before i), and nothing after the sum reads
    `blob`."""
    from modelport.optimize.onednn import InferenceConvolution

    conv_layer = g.order[i][0]
    conv = g.module(i)
    if type(conv) is not InferenceConvolution or conv.relu or len(conv_layer.bottoms) != 1 or \
            conv_layer.tops != (blob,) or blob == other or blob in g.outputs:
        return False
    for k in range(i + 1, j):
        between = g.order[k][0]
        touched = set(between.bottoms) | set(between.tops)
        if blob in touched or top in touched or other in between.tops:
            return False
    if blob != top and g.read_after(j, blob):
        return False
    return _writer_before(g, i, other) is not None or other in g.net.input_names


def optimize_for_inference(net: Any, *, channels_last: bool = False, compile: bool = False,
                           winograd: bool | str = False, report: OptimizeReport | None = None,
                           in_place: bool = False, eager_kernels: bool = True) -> Any:
    """An inference-optimised copy of `net` (a CaffeNet; `net` itself is not changed unless
    `in_place`, which saves a copy of the weights when the original is not needed).

    `channels_last` stores 4-D weights in channels_last order (convolutions then run and
    return NHWC-strided tensors; values are unchanged). `compile` wraps the result in
    `torch.compile` (not exportable afterwards). `winograd` (True or "auto": where timing the
    first call of each input shape finds it faster; "always": every eligible layer) computes
    3x3 stride-1 convolutions by Winograd F(4x4, 3x3) in eager CPU inference.
    `eager_kernels` (default on) runs convolutions and inner products on oneDNN in eager CPU
    inference (modelport.optimize.onednn); off, the modules stay the portable ones whose state
    dict matches the generated source (`convert --optimize`). Pass an OptimizeReport to learn
    what changed.
    """
    if winograd not in (False, True, "auto", "always"):
        raise ConfigError(f"winograd must be True, 'auto' or 'always', got {winograd!r}")
    if not isinstance(net, CaffeNet):
        raise ConfigError("--optimize needs the Caffe net (deploy.prototxt + caffemodel), not a "
                          "generated model.py. Fix: export from the prototxt and caffemodel")
    out = net if in_place else copy.deepcopy(net)
    out.train(False)
    rep = report if report is not None else OptimizeReport()
    g = _Graph(out)
    with torch.no_grad():
        _drop_identity_layers(g, rep)
        _fold_chains(g, rep)
        if onednn.AVAILABLE and eager_kernels:
            _use_onednn_kernels(g, str(winograd) if winograd else None)
            _fuse_residual_sums(g, rep)
    out.run_order = g.order
    for p in out.parameters():
        p.requires_grad_(False)
    if channels_last:
        for module in out.modules():
            for p in list(module.parameters(recurse=False)):
                if p.dim() == 4:
                    p.data = p.data.contiguous(memory_format=torch.channels_last)
    if compile:
        compiled: Callable[..., Any] = torch.compile(out)
        return compiled
    return out
