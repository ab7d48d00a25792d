"""Deploying a converted net: ONNX (standard ops only), TorchScript and torch.export programs,
Keras 3 (`export_keras`: model_keras.py + weights; inference optimisation is modelport.optimize).

Every exporter checks what it wrote against the live module on the same inputs and refuses to
write a file that does not match; files are written atomically.
"""

from __future__ import annotations

from typing import Any

from modelport.lazy import lazy_attribute

__all__ = [
    "ExportError",
    "ExportReport",
    "export_keras",
    "export_onnx",
    "export_program",
    "export_torchscript",
]

_WHERE = {
    "ExportError": "modelport.export.common",
    "ExportReport": "modelport.export.common",
    "export_keras": "modelport.export.keras",
    "export_onnx": "modelport.export.onnx",
    "export_torchscript": "modelport.export.torchscript",
    "export_program": "modelport.export.torchscript",
}


def __getattr__(name: str) -> Any:
    # Lazy: importing onnx / onnxruntime costs seconds and is only needed when exporting.
    return lazy_attribute(__name__, _WHERE, name)
