"""`modelport export --torchscript FILE.pt`: a traced TorchScript archive
(modelport.export.torchscript)."""

from __future__ import annotations

import argparse
from typing import Any

from modelport.export.targets import ExportTarget, register_target


def build(module: Any, args: argparse.Namespace, inputs: Any,
          outputs: list[str] | None) -> tuple[bytes, Any]:
    """The checked TorchScript archive's bytes and its report (--tolerance)."""
    from modelport.export.torchscript import export_torchscript

    return export_torchscript(module, None, inputs=inputs, outputs=outputs, rel=args.tolerance)


register_target(ExportTarget("torchscript", "--torchscript", "FILE.pt",
                             "write a traced TorchScript archive", build, rank=20))
