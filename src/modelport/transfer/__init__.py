"""Transfer learning on converted Caffe nets: net surgery, feature extraction, classifier heads
(softmax, average, ensemble, linear SVM) and the Gated Transfer Network, and an experiment
runner that compares them (`modelport transfer`)."""

from __future__ import annotations

from modelport.transfer.gated import GatedTransfer
from modelport.transfer.heads import (
    AverageHead,
    EnsembleHead,
    GatedHead,
    SoftmaxHead,
    Standardizer,
    SVMHead,
    TrainConfig,
)
from modelport.transfer.surgery import (
    FINETUNE,
    LrPreset,
    Surgery,
    cut,
    export,
    freeze,
    param_groups,
    replace,
    set_lr_mults,
    sync_weights,
)

__all__ = [
    "FINETUNE",
    "AverageHead",
    "EnsembleHead",
    "GatedHead",
    "GatedTransfer",
    "LrPreset",
    "SVMHead",
    "SoftmaxHead",
    "Standardizer",
    "Surgery",
    "TrainConfig",
    "cut",
    "export",
    "freeze",
    "param_groups",
    "replace",
    "set_lr_mults",
    "sync_weights",
]
