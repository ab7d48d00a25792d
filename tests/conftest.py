"""Shared pytest setup: make tests/ importable for golden_support."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
