"""Normalisation layers: LRN, BatchNorm, Scale, Bias, MVN."""

from __future__ import annotations
