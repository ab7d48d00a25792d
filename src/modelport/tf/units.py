"""The PyTorch side of a port: the modules that own parameters or buffers, in registration
order (`named_modules()`, the order a twin module's `__init__` creates them), each with its
kind and its slots (state-dict key and shape of each parameter / buffer it owns directly).

Kinds: `conv` (nn.Conv1d/2d/3d), `depthwise` (a conv with `groups == in_channels > 1`),
`conv_transpose`, `dense` (nn.Linear), `bn` (BatchNorm1d/2d/3d), `layernorm`, `embedding`,
`prelu`,
`other` (any other module owning tensors: only an explicit rule fills it).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["ROLE_ATTRS", "Unit", "torch_units"]

# unit kind -> source role -> the attribute (parameter / buffer) it fills
ROLE_ATTRS: dict[str, dict[str, str]] = {
    "conv": {"kernel": "weight", "pointwise_kernel": "weight", "bias": "bias"},
    "depthwise": {"kernel": "weight", "depthwise_kernel": "weight", "bias": "bias"},
    "conv_transpose": {"kernel": "weight", "bias": "bias"},
    "dense": {"kernel": "weight", "bias": "bias"},
    "bn": {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
           "moving_variance": "running_var"},
    "layernorm": {"gamma": "weight", "beta": "bias"},
    "embedding": {"embeddings": "weight"},
    "prelu": {"alpha": "weight"},
    "other": {},
}


@dataclass
class Unit:
    """One torch module owning tensors: its path, kind and slots (attr -> (key, shape))."""

    path: str
    module: nn.Module
    kind: str
    slots: dict[str, tuple[str, tuple[int, ...]]]

    def key(self, attr: str) -> str:
        return f"{self.path}.{attr}" if self.path else attr

    def describe(self) -> str:
        return f"'{self.path or '(root)'}' ({type(self.module).__name__})"


def kind_of(module: nn.Module) -> str:
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "conv_transpose"
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.groups > 1 and module.groups == module.in_channels:
            return "depthwise"
        return "conv"
    if isinstance(module, nn.Linear):
        return "dense"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "bn"
    if isinstance(module, nn.LayerNorm):
        return "layernorm"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, nn.PReLU):
        return "prelu"
    return "other"


def torch_units(root: nn.Module) -> list[Unit]:
    """Every module of `root` that owns a parameter or buffer itself, in named_modules order."""
    units = []
    for path, module in root.named_modules():
        slots: dict[str, tuple[str, tuple[int, ...]]] = {}
        for attr, t in list(module._parameters.items()) + list(module._buffers.items()):
            if t is not None:
                slots[attr] = (f"{path}.{attr}" if path else attr, tuple(t.shape))
        if slots:
            units.append(Unit(path, module, kind_of(module), slots))
    return units
