"""The registry of export targets (`modelport export --onnx / --torchscript /
--exported-program ...`), registered by name like layer converters.

Each target is one file `modelport/export/target_<name>.py` that registers an `ExportTarget`:
its CLI flag and help, and a `build(module, args, inputs, outputs) -> (bytes, report)` that
imports the exporter itself (declaring a target must not import torch: `modelport --help`
lists the flags). `export_targets()` imports every such file.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ExportTarget", "export_targets", "register_target"]

#: (module to export, parsed CLI args, input arrays or None, output blobs or None)
#: -> (the file's bytes, its ExportReport).
Builder = Callable[[Any, argparse.Namespace, Any, "list[str] | None"], "tuple[bytes, Any]"]


@dataclass(frozen=True)
class ExportTarget:
    """One export format: `flag` FILE on the command line, `build` makes the checked bytes;
    targets are listed and exported in `rank` order."""

    name: str
    flag: str
    metavar: str
    help: str
    build: Builder
    rank: int = 100

    @property
    def dest(self) -> str:
        """The argparse attribute of `flag` ("--exported-program" -> "exported_program")."""
        return self.flag.lstrip("-").replace("-", "_")


_TARGETS: dict[str, ExportTarget] = {}


def register_target(target: ExportTarget) -> ExportTarget:
    """Add (or replace) an export target by name."""
    _TARGETS[target.name] = target
    return target


def export_targets() -> list[ExportTarget]:
    """Every registered target (the built-in target_* modules imported first), in rank order."""
    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules([str(pathlib.Path(__file__).parent)]):
        if info.name.startswith("target_"):
            importlib.import_module(f"{package}.{info.name}")
    return sorted(_TARGETS.values(), key=lambda t: (t.rank, t.name))
