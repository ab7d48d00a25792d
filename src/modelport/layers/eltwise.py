"""Eltwise (PROD, SUM with coefficients, MAX)."""

from __future__ import annotations

import numpy as np
import torch

from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext
from modelport.layers.registry import register_layer
from modelport.schema import caffe_pb2

EP = caffe_pb2.EltwiseParameter


class CaffeEltwise(CaffeModule):
    """Combine equally shaped bottoms element by element, in bottom order as Caffe does.

    SUM accumulates `0 + c0*b0 + c1*b1 + ...`; MAX keeps the running value unless a later bottom
    is strictly greater (std::max's order, so a NaN bottom never wins).
    """

    def __init__(self, operation: int, coeffs: tuple[float, ...]) -> None:
        super().__init__()
        self.operation = operation
        self.coeffs = coeffs

    def forward(self, *bottoms: torch.Tensor) -> torch.Tensor:
        first = bottoms[0]
        if self.operation == EP.PROD:
            out = first * bottoms[1]
            for b in bottoms[2:]:
                out = out * b
            return out
        if self.operation == EP.SUM:
            out = first if self.coeffs[0] == 1.0 else first * self.coeffs[0]
            for b, c in zip(bottoms[1:], self.coeffs[1:]):
                out = out + (b if c == 1.0 else b * c)
            return out
        out = torch.where(first > bottoms[1], first, bottoms[1])
        for b in bottoms[2:]:
            out = torch.where(b > out, b, out)
        return out

    def extra_repr(self) -> str:
        name = EP.EltwiseOp.Name(self.operation)
        return f"{name}, coeff={self.coeffs}" if self.operation == EP.SUM else name


@register_layer("Eltwise")
def convert_eltwise(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Eltwise (layers/eltwise_layer.cpp): element-wise PROD, SUM (default; optional
    `coeff`, one per bottom) or MAX of two or more bottoms, which must all have exactly the same
    shape; coefficients are only allowed with SUM (MAX ignores them, as Caffe does)."""
    n = len(layer.bottoms)
    if n < 2:
        raise ctx.error(f"takes at least 2 bottom blobs, got {n}")
    p = layer.param.eltwise_param
    if p.operation not in (EP.PROD, EP.SUM, EP.MAX):
        raise ctx.error(f"unknown eltwise operation {p.operation}")
    coeffs = tuple(float(np.float32(c)) for c in p.coeff)
    if coeffs and len(coeffs) != n:
        raise ctx.error(f"has {len(coeffs)} coeff values for {n} bottoms",
                        "give one coeff per bottom blob (or none)")
    if coeffs and p.operation == EP.PROD:
        raise ctx.error("coeff is only allowed with operation SUM")
    shapes = ctx.bottom_shapes
    for name, shape in zip(layer.bottoms[1:], shapes[1:]):
        if shape != shapes[0]:
            raise ctx.error(f"bottom '{name}' has shape {shape} but bottom "
                            f"'{layer.bottoms[0]}' has {shapes[0]}; Caffe requires identical "
                            "shapes (no broadcasting)",
                            "reshape the bottoms to one shape")
    return CaffeEltwise(p.operation, coeffs or (1.0,) * n)
