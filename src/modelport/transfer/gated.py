"""The Gated Transfer Network (Kumar, "Flexible Transfer Learning via Framework Conversion").

Features x_1..x_n from n layers of a pretrained net (fc6 and fc7 of CaffeNet in the paper) are
gated per dimension and summed before one linear softmax classifier:

    z_i = sigmoid(W_i x_i + b)          W_i: d x d, one per layer; b: d, shared by all layers
    r   = softmax(z) over the n layers  (each dimension's n gates sum to one)
    g   = sum_i r_i * x_i               (element-wise)
    logits = W_c g + b_c

When the layers have different widths (the paper's "future work"), each x_i whose width differs
from the gate width d first goes through a learned linear projection P_i (d x dims[i], with
bias); layers already d wide are used as they are. With one layer the gate is identically 1, so
the model is exactly a linear softmax classifier on x.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from modelport.errors import ConfigError


class GatedTransfer(nn.Module):
    """GTN head: `GatedTransfer(dims, num_classes)(features) -> logits`.

    Args:
        dims: the width of each layer's feature vector (n >= 1 layers).
        num_classes: classifier outputs.
        width: the gate width d (default: dims[0] when all widths agree, else max(dims)).
    """

    def __init__(self, dims: Sequence[int], num_classes: int, width: int | None = None) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if not dims or any(d <= 0 for d in dims):
            raise ConfigError(f"GatedTransfer needs one positive width per layer, got {dims}")
        if num_classes < 1:
            raise ConfigError(f"GatedTransfer needs num_classes >= 1, got {num_classes}")
        d = int(width) if width else (dims[0] if len(set(dims)) == 1 else max(dims))
        self.dims = tuple(dims)
        self.width = d
        self.num_classes = int(num_classes)
        self.project = nn.ModuleList(
            nn.Identity() if di == d else nn.Linear(di, d) for di in dims)
        self.gate = nn.ModuleList(nn.Linear(d, d, bias=False) for _ in dims)
        self.gate_bias = nn.Parameter(torch.zeros(d))
        self.classifier = nn.Linear(d, num_classes)

    def _check(self, features: Sequence[torch.Tensor]) -> None:
        if len(features) != len(self.dims):
            raise ConfigError(f"GatedTransfer was built for {len(self.dims)} layers, "
                              f"got {len(features)} feature batches")
        for i, (x, d) in enumerate(zip(features, self.dims)):
            if x.dim() != 2 or x.shape[1] != d:
                raise ConfigError(f"GatedTransfer: layer {i} features have shape "
                                  f"{tuple(x.shape)}, expected (batch, {d})")

    def _projected(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        self._check(features)
        return [proj(x) for proj, x in zip(self.project, features)]

    def _gates(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        z = torch.stack([torch.sigmoid(g(x) + self.gate_bias) for g, x in zip(self.gate, xs)],
                        dim=1)  # (batch, n, d)
        return torch.softmax(z, dim=1)

    def gates(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The normalised gates r as a (batch, n, d) tensor; r.sum(1) is all ones."""
        return self._gates(self._projected(features))

    def gated(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """g = sum_i r_i * x_i, the (batch, d) representation the classifier sees."""
        xs = self._projected(features)
        r = self._gates(xs)
        return (r * torch.stack(xs, dim=1)).sum(dim=1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.gated(features))
