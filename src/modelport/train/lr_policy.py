"""Caffe's learning-rate policies (SGDSolver::GetLearningRate, solvers/sgd_solver.cpp).

`iter` is the number of updates already applied. Caffe computes in float32 (`Dtype = float`)
except where C++ promotes `pow(float, int)` to double (step, exp, multistep); the arithmetic
below follows the same precision so the rates match Caffe's bit for bit or to one ulp:

- fixed:     base_lr
- step:      base_lr * gamma ^ floor(iter / stepsize)            (current_step = iter / stepsize)
- exp:       base_lr * gamma ^ iter
- inv:       base_lr * (1 + gamma * iter) ^ (-power)
- multistep: base_lr * gamma ^ current_step, where current_step advances by one (at most one
             per call) when iter >= stepvalue[current_step]
- poly:      base_lr * (1 - iter / max_iter) ^ power
- sigmoid:   base_lr / (1 + exp(-gamma * (iter - stepsize)))
"""

from __future__ import annotations

import math

import numpy as np

from modelport.errors import ConfigError
from modelport.formats.caffe import caffe_pb2

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")

f32 = np.float32


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"solver: {what}")


def check_policy(param: caffe_pb2.SolverParameter) -> None:
    """Reject a policy Caffe would abort on (unknown name, missing or invalid fields)."""
    policy = param.lr_policy
    if not policy:
        raise ConfigError("solver: lr_policy is not set. Fix: add e.g. lr_policy: \"fixed\"")
    if policy not in POLICIES:
        raise ConfigError(f"solver: unknown lr_policy '{policy}'. Fix: use one of "
                          f"{', '.join(POLICIES)}")
    if policy in ("step", "sigmoid"):
        _need(param.stepsize > 0, f"lr_policy {policy} needs stepsize > 0. Fix: set stepsize")
    if policy in ("step", "exp", "inv", "multistep", "sigmoid"):
        _need(param.gamma >= 0, f"lr_policy {policy} needs gamma >= 0. Fix: set gamma")
    if policy == "poly":
        _need(param.max_iter > 0, "lr_policy poly needs max_iter > 0. Fix: set max_iter")
    if policy == "multistep":
        values = list(param.stepvalue)
        _need(all(a < b for a, b in zip(values, values[1:])),
              f"multistep stepvalue {values} must increase. Fix: sort the stepvalue entries")


def learning_rate(param: caffe_pb2.SolverParameter, iter: int, current_step: int,
                  ) -> tuple[float, int]:
    """The base learning rate for update number `iter` and the new `current_step`.

    Returns a float32-representable Python float (the rate Caffe's `solver.lr` reports).
    """
    policy = param.lr_policy
    base = f32(param.base_lr)
    gamma = f32(param.gamma)
    if policy == "fixed":
        rate = base
    elif policy == "step":
        current_step = iter // param.stepsize
        rate = f32(float(base) * math.pow(float(gamma), current_step))
    elif policy == "exp":
        rate = f32(float(base) * math.pow(float(gamma), iter))
    elif policy == "inv":
        inner = f32(f32(1.0) + f32(gamma * f32(iter)))
        rate = f32(base * np.power(inner, -f32(param.power), dtype=np.float32))
    elif policy == "multistep":
        if current_step < len(param.stepvalue) and iter >= param.stepvalue[current_step]:
            current_step += 1
        rate = f32(float(base) * math.pow(float(gamma), current_step))
    elif policy == "poly":
        frac = f32(f32(1.0) - f32(f32(iter) / f32(param.max_iter)))
        rate = f32(base * np.power(frac, f32(param.power), dtype=np.float32))
    elif policy == "sigmoid":
        z = f32(-gamma * f32(f32(iter) - f32(param.stepsize)))
        rate = f32(base * f32(f32(1.0) / f32(f32(1.0) + np.exp(z, dtype=np.float32))))
    else:
        check_policy(param)
        raise AssertionError(policy)
    return float(rate), current_step
