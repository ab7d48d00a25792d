"""Training with Caffe's semantics: data transforms and data layers, solvers, snapshots.

    from modelport.train import Solver
    solver = Solver("solver.prototxt", weights="init.caffemodel")
    solver.solve()                      # or solver.step(n), solver.snapshot(), solver.restore()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelport.train.solver import Solver

__all__ = ["Solver"]


def __getattr__(name: str) -> Any:
    # Imported lazily: `import modelport.train.data` must not pull in the solver and torch nets.
    if name == "Solver":
        from modelport.train.solver import Solver

        return Solver
    raise AttributeError(f"module 'modelport.train' has no attribute {name!r}")
