"""The project's tolerance for per-iteration training losses against a real Caffe run.

Training is chaotic: a float32 rounding difference grows with every update, so after enough
iterations two correct implementations (or Caffe against itself) no longer agree to 1e-4. The
rule (README, "Training parity"):

- Strict window: while Caffe's own rounding reruns (Caffe rerun with every learnable value moved
  by -1/0/+1 ulp after every update, golden `noise_env.json` "loss_rel") still agree with the
  original run to AGREEMENT (1e-6 relative), loss k must be within the strict tolerance
  `strict(k) * max(1, |ref|)` (the same as every other parity check).
- After the window (from the first iteration whose rerun spread exceeds 1e-6 on), loss k must be
  within the reruns' spread so far: `max(strict(k), max(loss_rel[:k+1])) * max(1, |ref|)` —
  as close as Caffe follows itself, never looser than that and never tighter than strict.

A run without rerun data (no `noise_env.json`) is all window: the strict tolerance throughout.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Sequence

AGREEMENT = 1e-6


def rerun_spread(folder: pathlib.Path) -> list[float] | None:
    """The reruns' per-iteration relative loss spread of a golden run, or None."""
    path = folder / "noise_env.json"
    if not path.exists():
        return None
    return [float(v) for v in json.loads(path.read_text())["loss_rel"]]


def loss_tolerance(k: int, ref: float, strict: Callable[[int], float],
                   spread: Sequence[float] | None) -> float:
    """The absolute tolerance for loss k of a run whose Caffe reference is `ref`."""
    scale = max(1.0, abs(ref))
    if spread is None or k >= len(spread):
        seen = 0.0 if spread is None else max(spread, default=0.0)
    else:
        seen = max(spread[: k + 1])
    if seen <= AGREEMENT:  # the strict window: Caffe's reruns still agree
        return strict(k) * scale
    return max(strict(k), seen) * scale


def check_losses(got: Sequence[float], ref: Sequence[float], strict: Callable[[int], float],
                 spread: Sequence[float] | None = None, what: str = "loss") -> None:
    """Assert every loss of `got` is within the rule's tolerance of Caffe's `ref`."""
    assert len(got) == len(ref), f"{what}: {len(got)} iterations, Caffe ran {len(ref)}"
    for k, (g, r) in enumerate(zip(got, ref, strict=True)):
        tol = loss_tolerance(k, r, strict, spread)
        assert abs(g - r) <= tol, f"{what}[{k}]: got {g!r}, Caffe {r!r} (tolerance {tol:.3g})"
