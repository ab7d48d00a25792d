"""Softmax, Reduction and ArgMax."""

from __future__ import annotations
