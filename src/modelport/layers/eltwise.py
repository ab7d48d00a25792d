"""Eltwise (PROD, SUM with coefficients, MAX)."""

from __future__ import annotations
