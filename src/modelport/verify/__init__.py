"""Parity checking: compare every blob of a converted net with a real reference.

    report = modelport.verify(net, "dumps/")            # or OpenCVReference(prototxt, caffemodel)
    report.passed, report.first_divergent
    report.raise_for_failure()                           # ParityError when anything differs

This package is itself callable (`modelport.verify(...)` is `modelport.verify.verify(...)`), so
the public function and the package can share the name.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from modelport.lazy import lazy_attribute
from modelport.verify.compare import compare_arrays, random_inputs, run_layers, verify
from modelport.verify.references import DumpReference, Reference, ReferenceOutput, resolve_reference
from modelport.verify.report import BlobResult, Divergence, ParityReport
from modelport.verify.tolerance import Tolerance

__all__ = [
    "BlobResult",
    "Divergence",
    "DumpReference",
    "OnnxRuntimeReference",
    "OpenCVReference",
    "ParityReport",
    "PycaffeReference",
    "Reference",
    "ReferenceOutput",
    "Tolerance",
    "compare_arrays",
    "random_inputs",
    "resolve_reference",
    "run_layers",
    "verify",
]

_LAZY = {
    "OpenCVReference": "modelport.verify.ref_opencv",
    "PycaffeReference": "modelport.verify.ref_pycaffe",
    "OnnxRuntimeReference": "modelport.verify.ref_onnx",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)


class _CallableModule(types.ModuleType):
    """Lets `modelport.verify(net, reference, inputs)` call `verify` on the package."""

    def __call__(self, *args: Any, **kwargs: Any) -> ParityReport:
        return verify(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
