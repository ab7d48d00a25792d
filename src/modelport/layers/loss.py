"""Loss and metric layers (training): SoftmaxWithLoss, EuclideanLoss, SigmoidCrossEntropyLoss,
HingeLoss, InfogainLoss, MultinomialLogisticLoss, ContrastiveLoss, Accuracy."""

from __future__ import annotations
