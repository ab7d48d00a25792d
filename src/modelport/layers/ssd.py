"""The SSD fork's layers: Permute, Normalize, PriorBox, DetectionOutput."""

from __future__ import annotations
