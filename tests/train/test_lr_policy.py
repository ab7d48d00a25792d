"""Learning-rate policies against the formulas in tests/golden/solver/README.md (computed here
in float64 from the solver fields as Caffe stores them, i.e. float32), multistep bookkeeping,
and Caffe's parameter checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelport.errors import ConfigError
from modelport.formats.caffe import caffe_pb2
from modelport.train.lr_policy import check_policy, learning_rate


def solver(**fields: object) -> caffe_pb2.SolverParameter:
    p = caffe_pb2.SolverParameter(base_lr=0.05, max_iter=100)
    for k, v in fields.items():
        if isinstance(v, list):
            getattr(p, k).extend(v)
        else:
            setattr(p, k, v)
    return p


def rates(p: caffe_pb2.SolverParameter, n: int) -> list[float]:
    out, step = [], 0
    for it in range(n):
        r, step = learning_rate(p, it, step)
        out.append(r)
    return out


def f(x: float) -> float:
    """A solver field as Caffe holds it (proto float)."""
    return float(np.float32(x))


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 2e-6 * max(abs(b), 1e-12)


def test_fixed() -> None:
    assert all(close(r, 0.05) for r in rates(solver(lr_policy="fixed"), 20))


def test_step() -> None:
    p = solver(lr_policy="step", gamma=0.3, stepsize=7)
    for it, r in enumerate(rates(p, 40)):
        assert close(r, f(0.05) * f(0.3) ** math.floor(it / 7)), it
    assert learning_rate(p, 22, 0)[1] == 3  # current_step = iter / stepsize


def test_exp() -> None:
    p = solver(lr_policy="exp", gamma=0.97)
    for it, r in enumerate(rates(p, 50)):
        assert close(r, f(0.05) * f(0.97) ** it), it


def test_inv() -> None:
    p = solver(lr_policy="inv", gamma=1e-3, power=0.75)
    for it, r in enumerate(rates(p, 50)):
        assert close(r, f(0.05) * (1 + f(1e-3) * it) ** -0.75), it


def test_multistep_advances_once_per_call() -> None:
    p = solver(lr_policy="multistep", gamma=0.5, stepvalue=[3, 4, 10])
    got = rates(p, 14)
    steps = [sum(it >= v for v in (3, 4, 10)) for it in range(14)]
    for it, (r, k) in enumerate(zip(got, steps)):
        assert close(r, 0.05 * 0.5 ** k), it
    # Caffe advances current_step by at most one per GetLearningRate call: starting late
    # (a solver state with current_step 0 at iter 20) takes one call per step to catch up.
    r, step = learning_rate(p, 20, 0)
    assert step == 1 and close(r, 0.025)
    r, step = learning_rate(p, 20, step)
    assert step == 2 and close(r, 0.0125)


def test_poly_reaches_zero_at_max_iter() -> None:
    p = solver(lr_policy="poly", power=1.5, max_iter=40)
    got = rates(p, 41)
    for it, r in enumerate(got):
        assert close(r, f(0.05) * (1 - it / 40) ** 1.5) or (it == 40 and r == 0.0), it
    assert got[-1] == 0.0


def test_sigmoid() -> None:
    p = solver(lr_policy="sigmoid", gamma=0.8, stepsize=5)
    for it, r in enumerate(rates(p, 20)):
        assert close(r, f(0.05) / (1 + math.exp(-f(0.8) * (it - 5)))), it


@pytest.mark.parametrize("fields, message", [
    ({}, "lr_policy is not set"),
    ({"lr_policy": "cosine"}, "unknown lr_policy 'cosine'"),
    ({"lr_policy": "step", "gamma": 0.1}, "stepsize > 0"),
    ({"lr_policy": "sigmoid", "gamma": 0.1}, "stepsize > 0"),
    ({"lr_policy": "exp", "gamma": -0.5}, "gamma >= 0"),
    ({"lr_policy": "multistep", "gamma": 0.1, "stepvalue": [5, 3]}, "must increase"),
])
def test_invalid_policies(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_policy(solver(**fields))


def test_poly_needs_max_iter() -> None:
    p = solver(lr_policy="poly", power=1.0)
    p.max_iter = 0
    with pytest.raises(ConfigError, match="max_iter"):
        check_policy(p)
