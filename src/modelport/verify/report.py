"""The result of a parity check: one row per compared blob, in network order, and the verdict.

`ParityReport.to_dict()` is the JSON form (schema: `report.schema.json` beside this file);
`modelport.verify.render` draws it as a terminal table and `modelport.verify.html` as a
self-contained HTML page.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import ParityError
from modelport.verify.tolerance import Tolerance

__all__ = ["BlobResult", "Divergence", "ParityReport", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


def _num(x: float | None) -> float | None:
    """A float for JSON: None stays None; inf/nan (not valid JSON) become None."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


@dataclass
class BlobResult:
    """One blob (or one layer's output, for references that expose every layer) compared.

    `layer` is the layer that produced the value; when the reference only holds a blob's final
    value after in-place layers, `chain` lists every layer that wrote it (producer first).
    `compared` is False for blobs the reference cannot provide (`skip_reason` says why).
    """

    blob: str
    layer: str
    type: str
    kind: str  # "input", "top" or "split"
    shape: tuple[int, ...]
    chain: tuple[str, ...] = ()
    compared: bool = True
    skip_reason: str = ""
    ref_shape: tuple[int, ...] | None = None
    max_abs_diff: float | None = None
    where: tuple[int, ...] | None = None
    ours_at: float | None = None
    ref_at: float | None = None
    max_rel_diff: float | None = None
    cosine: float | None = None
    allowed: float = 0.0
    exact: bool = False
    mismatched: int = 0
    size: int = 0
    passed: bool = True
    top1: float | None = None
    top5: float | None = None
    note: str = ""
    # For rows out of tolerance: the error this layer (chain) makes on the reference's own
    # bottoms, the remainder inherited from its bottoms, and a one-line verdict.
    introduced: float | None = None
    inherited: float | None = None
    verdict: str = ""

    @property
    def mismatched_fraction(self) -> float:
        return self.mismatched / self.size if self.size else 0.0

    @property
    def label(self) -> str:
        """The layer column: 'conv1' or 'conv1 (+relu1)' for an in-place chain."""
        if len(self.chain) > 1:
            return f"{self.chain[0]} (+{', '.join(self.chain[1:])})"
        return self.layer

    def to_dict(self) -> dict[str, Any]:
        return {
            "blob": self.blob,
            "layer": self.layer,
            "type": self.type,
            "kind": self.kind,
            "in_place_chain": list(self.chain),
            "shape": list(self.shape),
            "reference_shape": None if self.ref_shape is None else list(self.ref_shape),
            "max_abs_diff": _num(self.max_abs_diff),
            "where": None if self.where is None else list(self.where),
            "ours_at_max": _num(self.ours_at),
            "reference_at_max": _num(self.ref_at),
            "max_rel_diff": _num(self.max_rel_diff),
            "cosine": _num(self.cosine),
            "allowed": float(self.allowed),
            "exact": self.exact,
            "mismatched": self.mismatched,
            "mismatched_fraction": self.mismatched_fraction,
            "passed": self.passed,
            "top1_agreement": _num(self.top1),
            "top5_agreement": _num(self.top5),
            "introduced": _num(self.introduced),
            "inherited": _num(self.inherited),
            "verdict": self.verdict,
            "note": self.note,
        }


@dataclass
class Divergence:
    """The first layer whose output is out of tolerance, and where its error comes from.

    `introduced` is the error of this layer's own computation: the layer (or in-place chain)
    re-run on the reference's bottoms, compared with the reference's top. `inherited` is the
    rest of the total (`max(0, max_abs_diff - introduced)`): error carried in by the bottoms.
    """

    layer: str
    type: str
    blob: str
    max_abs_diff: float | None
    allowed: float
    introduced: float | None
    inherited: float | None
    bottoms_max_abs_diff: float | None = None
    chain: tuple[str, ...] = ()
    verdict: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "type": self.type,
            "blob": self.blob,
            "max_abs_diff": _num(self.max_abs_diff),
            "allowed": float(self.allowed),
            "introduced": _num(self.introduced),
            "inherited": _num(self.inherited),
            "bottoms_max_abs_diff": _num(self.bottoms_max_abs_diff),
            "in_place_chain": list(self.chain),
            "verdict": self.verdict,
            "note": self.note,
        }


@dataclass
class ParityReport:
    """Every blob compared against a reference, in network order, and the first divergence."""

    net: str
    reference: str
    tolerance: Tolerance
    rows: list[BlobResult]
    first_divergent: Divergence | None = None
    inputs: dict[str, str] = field(default_factory=dict)  # input blob -> where it came from
    notes: list[str] = field(default_factory=list)

    @property
    def compared(self) -> list[BlobResult]:
        return [r for r in self.rows if r.compared]

    @property
    def skipped(self) -> list[BlobResult]:
        return [r for r in self.rows if not r.compared]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.compared)

    def row(self, blob: str) -> BlobResult:
        for r in self.rows:
            if r.blob == blob:
                return r
        raise KeyError(blob)

    def summary(self) -> str:
        """One line: the verdict, with the first divergent layer when there is one."""
        compared = self.compared
        failed = [r for r in compared if not r.passed]
        if not failed and compared and all(r.kind == "input" for r in compared):
            return (f"nothing but the inputs could be compared: {self.reference} runs none "
                    f"of the {len(self.skipped)} skipped layer output(s)")
        if not failed:
            return (f"all {len(compared)} compared blobs match {self.reference} "
                    f"({self.tolerance.describe()})")
        text = f"{len(failed)} of {len(compared)} blobs differ from {self.reference}"
        d = self.first_divergent
        if d is not None:
            text += f"; first divergent layer '{d.layer}' (type {d.type}), blob '{d.blob}'"
            if d.max_abs_diff is not None:
                text += f", max|diff| {d.max_abs_diff:.3g} > allowed {d.allowed:.3g}"
            if d.verdict:
                text += f": {d.verdict}"
        return text

    def raise_for_failure(self) -> None:
        """Raise ParityError (exit status 1 in the CLI) unless every compared blob passed."""
        if not self.passed:
            raise ParityError(self.summary())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "net": self.net,
            "reference": self.reference,
            "passed": self.passed,
            "tolerance": {"rel": float(self.tolerance.rel), "rule": self.tolerance.describe()},
            "inputs": dict(self.inputs),
            "blobs": [r.to_dict() for r in self.compared],
            "skipped": [{"blob": r.blob, "layer": r.layer, "type": r.type, "reason": r.skip_reason}
                        for r in self.skipped],
            "first_divergent": (None if self.first_divergent is None
                                else self.first_divergent.to_dict()),
            "summary": self.summary(),
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
