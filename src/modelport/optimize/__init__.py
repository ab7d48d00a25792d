"""Inference optimisation of a converted net (speed rewrites that keep Caffe's results):
folding BatchNorm/Scale/Bias/Power into convolutions and inner products, fusing ReLU
(`inference`), oneDNN kernels for eager CPU inference (`onednn`) and Winograd F(4x4, 3x3)
convolutions (`winograd`).

Every optimised module answers `portable()`: the same layer as standard modules (sharing the
parameters, same state-dict keys), which is what generated model.py and exports are written
from.
"""

from __future__ import annotations

from typing import Any

from modelport.lazy import lazy_attribute

__all__ = ["OptimizeReport", "optimize_for_inference"]


def __getattr__(name: str) -> Any:
    # Lazy: the package imports torch.
    return lazy_attribute(__name__, dict.fromkeys(__all__, "modelport.optimize.inference"), name)
