"""Lazy re-exports (PEP 562): a package names a public attribute that lives in one of its
heavier modules (onnx, torch, TensorFlow readers) and imports that module only when the
attribute is first read, so importing the package stays cheap.

    _LAZY = {"export_onnx": "modelport.export.onnx"}

    def __getattr__(name: str) -> Any:
        return lazy_attribute(__name__, _LAZY, name)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["lazy_attribute"]


def lazy_attribute(package: str, where: Mapping[str, str], name: str) -> Any:
    """`name` read from the module `where[name]` (imported on first use); a name not in
    `where` is the AttributeError Python raises for a missing module attribute."""
    if name in where:
        return getattr(importlib.import_module(where[name]), name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
