"""How close a blob must be to its reference to count as equal.

The project rule (DESIGN.md, tests/golden/README.md): `max|ours - ref| <= rel * max(1, max|ref|)`
in float32, rel = 1e-4; verify and every export self-check use this one object. Blobs of
integer indices (ArgMax without `out_max_val`, and the index half of ArgMax with `out_max_val`
but no `axis`) must match exactly: an index is either right or wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelport.errors import ConfigError
from modelport.ir import Layer

__all__ = ["DEFAULT_REL", "Tolerance", "reference_scale"]

DEFAULT_REL = 1e-4


def reference_scale(ref: np.ndarray) -> float:
    """max(1, max|ref|) over the finite elements of `ref` (1 for an empty or all-inf blob)."""
    finite = np.abs(ref[np.isfinite(ref)]) if ref.size else np.zeros(0)
    return max(1.0, float(finite.max())) if finite.size else 1.0


@dataclass(frozen=True)
class Tolerance:
    """`allowed(ref) = rel * max(1, max|ref|)`: absolute for small blobs, relative for big ones."""

    rel: float = DEFAULT_REL

    def __post_init__(self) -> None:
        if not (isinstance(self.rel, int | float) and np.isfinite(self.rel) and self.rel >= 0):
            raise ConfigError(f"tolerance {self.rel!r} must be a finite number >= 0")

    def allowed(self, ref: np.ndarray) -> float:
        """The largest |ours - ref| accepted for this reference blob."""
        return float(self.rel) * reference_scale(ref)

    def allowed_for(self, layer: Layer | None, top: int, ref: np.ndarray) -> float | np.ndarray:
        """`allowed(ref)`, except 0 for integer-index outputs (a per-element array when a blob
        holds both indices and values)."""
        if layer is None or layer.type != "ArgMax":
            return self.allowed(ref)
        p = layer.param.argmax_param
        if not p.out_max_val:
            return 0.0  # every element is an index
        if p.HasField("axis"):
            return self.allowed(ref)  # values only
        # Caffe's ArgMaxLayer without axis and with out_max_val: N x 2 x top_k (x 1):
        # channel 0 holds the indices, channel 1 the values.
        if ref.ndim < 2 or ref.shape[1] != 2:
            return self.allowed(ref)
        allowed = np.full(ref.shape, self.allowed(ref[:, 1]), np.float64)
        allowed[:, 0] = 0.0
        return allowed

    def describe(self) -> str:
        return f"max|diff| <= {self.rel:g} * max(1, max|ref|)"
