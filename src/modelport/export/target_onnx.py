"""`modelport export --onnx FILE.onnx`: ONNX, standard operators only (modelport.export.onnx)."""

from __future__ import annotations

import argparse
from typing import Any

from modelport.export.targets import ExportTarget, register_target


def build(module: Any, args: argparse.Namespace, inputs: Any,
          outputs: list[str] | None) -> tuple[bytes, Any]:
    """The checked ONNX model's bytes and its report (--opset, --dynamic-batch, --tolerance)."""
    from modelport.export.onnx import export_onnx

    model, report = export_onnx(module, None, inputs=inputs, opset=args.opset,
                                dynamic_batch=args.dynamic_batch, outputs=outputs,
                                rel=args.tolerance)
    return model.SerializeToString(), report


register_target(ExportTarget("onnx", "--onnx", "FILE.onnx", "write an ONNX model", build, rank=10))
