"""`modelport export --exported-program FILE.pt2`: a torch.export ExportedProgram
(modelport.export.torchscript.build_program)."""

from __future__ import annotations

import argparse
from typing import Any

from modelport.export.targets import ExportTarget, register_target


def build(module: Any, args: argparse.Namespace, inputs: Any,
          outputs: list[str] | None) -> tuple[bytes, Any]:
    """The checked program's bytes and its report (--dynamic-batch, --tolerance)."""
    from modelport.export.torchscript import build_program

    _, report, data = build_program(module, inputs=inputs, outputs=outputs,
                                    dynamic_batch=args.dynamic_batch, rel=args.tolerance)
    return data, report


register_target(ExportTarget("program", "--exported-program", "FILE.pt2",
                             "write a torch.export ExportedProgram", build, rank=30))
