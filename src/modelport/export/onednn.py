"""oneDNN kernels for eager CPU inference of optimised nets, and when it is safe to use them.

torch's CPU build ships oneDNN; its inner product is multi-threaded where torch's BLAS
matrix-vector path is not. These private operators are used only in eager inference on plain
float32 CPU tensors: under TorchScript tracing, torch.compile / torch.export or ONNX export the
callers fall back to the standard operators, so exported graphs stay standard.
"""

from __future__ import annotations

import torch
from torch import nn


def _linear_available() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available()) and \
            hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


AVAILABLE = _linear_available()


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
