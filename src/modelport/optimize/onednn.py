"""oneDNN kernels for eager CPU inference of optimised nets, and when it is safe to use them.

torch's CPU build ships oneDNN. Its inner product is multi-threaded where torch's BLAS
matrix-vector path is not (VGG-16's fc6 at batch 1: 13.5 -> 7.5 ms on 2 cores), and its
convolution with the weights reordered once into its blocked layout, ReLU applied as a post-op,
skips the per-call weight reorder of torch's own path (open_nsfw-sized layers at batch 1: about
a third less time). These private operators are used only in eager inference on plain float32
CPU tensors: under TorchScript tracing, torch.compile / torch.export or ONNX export the modules
fall back to the standard operators, so exported graphs and generated source stay standard.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modelport.backends.portable import ConvolutionReLU, ConvolutionSum
from modelport.layers.base import CaffeModule
from modelport.layers.conv import CaffeConvolution
from modelport.layers.inner_product import CaffeInnerProduct


def _available() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available()) and all(
            hasattr(torch.ops.mkldnn, op) for op in (
                "_linear_pointwise", "_convolution_pointwise", "_reorder_convolution_weight"))
    except (AttributeError, RuntimeError):
        return False


AVAILABLE = _available()


def eager_cpu_inference(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this call runs eagerly on plain float32 CPU tensors without autograd (not under
    TorchScript tracing, torch.compile / torch.export, or ONNX export), with oneDNN present."""
    if not AVAILABLE:
        return False
    if type(x) is not torch.Tensor or type(weight) not in (torch.Tensor, nn.Parameter):
        return False  # fake / functional / proxy tensors: something is tracing us
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling() \
            or torch.onnx.is_in_onnx_export():
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    return x.device.type == "cpu" and x.dtype == torch.float32 == weight.dtype


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight^T (+ bias) by oneDNN's inner product; x is M x K, weight N x K (either may be
    a strided view)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class KernelCache(dict):  # type: ignore[type-arg]
    """Per-input-shape oneDNN data (opaque tensors): an empty cache when the module is copied
    or pickled (opaque tensors can be neither); the next call rebuilds it."""

    def __deepcopy__(self, memo: dict) -> KernelCache:
        return KernelCache()

    def __reduce__(self) -> tuple:
        return (KernelCache, ())


class InferenceInnerProduct(CaffeInnerProduct):
    """Caffe InnerProduct (axis 1, W kept N x K) whose eager CPU inference runs oneDNN's inner
    product: the same y = flatten(x) W^T + b, multi-threaded even for one sample (torch's BLAS
    gemv is single-threaded). Traced, compiled and exported graphs get the plain F.linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if eager_cpu_inference(x, self.weight):
            return linear(x.flatten(1).contiguous(), self.weight, self.bias)
        return super().forward(x)

    def as_plain(self) -> CaffeInnerProduct:
        """The same layer as a CaffeInnerProduct (shares the parameters)."""
        return CaffeInnerProduct(self.weight, self.bias, self.axis, self.transpose)

    def portable(self) -> CaffeInnerProduct:
        """The standard-op form codegen writes: the plain inner product."""
        return self.as_plain()

    @staticmethod
    def eligible(module: nn.Module) -> bool:
        return type(module) is CaffeInnerProduct and module.axis == 1 and not module.transpose


class InferenceConvolution(CaffeConvolution):
    """Caffe 2-D convolution (axis 1, not transposed), optionally followed by Caffe's ReLU
    (negative_slope 0), whose eager CPU inference runs oneDNN's convolution with the weights
    reordered once per input shape and the ReLU as a post-op. Traced, compiled and exported
    graphs get F.conv2d (+ ReLU)."""

    def __init__(self, conv: CaffeConvolution, relu: bool = False) -> None:
        super().__init__(conv.weight, conv.bias, conv.stride, conv.pad, conv.dilation,
                         conv.group, conv.axis, conv.transposed)
        self.relu = relu
        self._packed = KernelCache()  # input shape -> weights in oneDNN's layout

    @staticmethod
    def eligible(module: nn.Module) -> bool:
        return isinstance(module, CaffeConvolution) and not module.transposed and \
            module.axis == 1 and module.weight.dim() == 4

    def as_plain(self) -> CaffeConvolution:
        """The same convolution as a CaffeConvolution (shares the parameters; without ReLU)."""
        return CaffeConvolution(self.weight, self.bias, self.stride, self.pad, self.dilation,
                                self.group, self.axis, self.transposed)

    def portable(self) -> CaffeConvolution:
        """The standard-op form codegen writes: the plain convolution, with the ReLU after it
        when it is fused (same parameters, same state-dict keys)."""
        return ConvolutionReLU.of(self) if self.relu else self.as_plain()

    def _args(self) -> tuple[list[int], list[int], list[int], int]:
        return (list(self.pad), list(self.stride), list(self.dilation), self.group)

    def packed_weight(self, x: torch.Tensor) -> torch.Tensor:
        """The weights in oneDNN's layout for inputs shaped like `x` (made once per shape)."""
        key = tuple(int(d) for d in x.shape)
        packed = self._packed.get(key)
        if packed is None:
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                self.weight.detach(), *self._args(), list(key))
            self._packed[key] = packed
        return packed

    def direct(self, x: torch.Tensor) -> torch.Tensor:
        """oneDNN's convolution (+ ReLU post-op) of an eager float32 CPU input."""
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.packed_weight(x), self.bias, *self._args(),
            "relu" if self.relu else "none", [], "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and eager_cpu_inference(x, self.weight):
            return self.direct(x)
        y = super().forward(x)
        return F.relu_(y) if self.relu else y


def _same_layout(x: torch.Tensor, other: torch.Tensor) -> bool:
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and \
        not x.is_contiguous() else torch.contiguous_format
    return type(other) is torch.Tensor and other.dtype == torch.float32 and \
        other.is_contiguous(memory_format=fmt)


class InferenceConvolutionSum(CaffeModule):
    """A convolution whose output only feeds a Caffe Eltwise SUM (coefficients 1) with one other
    bottom, optionally followed by Caffe's ReLU: relu?(conv(x) + other), the residual join of a
    ResNet block. In eager CPU inference the addition and the ReLU are oneDNN post-ops of the
    convolution (no separate passes over the sum)."""

    def __init__(self, conv: InferenceConvolution, relu: bool) -> None:
        super().__init__()
        assert not conv.relu
        self.conv = conv
        self.relu = relu

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if x.dim() == 4 and eager_cpu_inference(x, conv.weight) and _same_layout(x, other):
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, conv.packed_weight(x), conv.bias, *conv._args(), "add", None,
                "relu" if self.relu else None, [], None)
        y = conv(x) + other
        return F.relu_(y) if self.relu else y

    def portable(self) -> ConvolutionSum:
        """The standard-op form codegen writes: relu?(conv(x) + other) with a plain conv."""
        return ConvolutionSum(self.conv.as_plain(), self.relu)
