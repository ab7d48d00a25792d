"""Training throughput: modelport's Caffe-exact solver vs plain torch.optim.SGD, same module.

A CaffeNet-sized fine-tune step (BVLC reference CaffeNet train_val: 5 conv + LRN + 3 fc, 61M
parameters, lr_mult 1/2 and decay_mult 1/0 on weights/biases) at batch 32 on CPU. Both sides
run the same CaffeNet module, forward + backward + update; the peer updates with
torch.optim.SGD(momentum, weight_decay) in per-layer param groups. Prints images/s of each and
the ratio (modelport / torch.optim). Random data and weights (Caffe fillers); no files needed.

    .venv/bin/python bench/train_throughput.py [--batch 32] [--steps 4] [--size 227]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from modelport.formats.caffe import caffe_pb2
from modelport.train.solver import Solver

NET = """
name: "CaffeNet"
layer { name: "data" type: "Input" top: "data" top: "label" }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 96 kernel_size: 11 stride: 4
    weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
  lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 256 pad: 2 kernel_size: 5 group: 2
    weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 1 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm2" type: "LRN" bottom: "pool2" top: "norm2"
  lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "conv3" type: "Convolution" bottom: "norm2" top: "conv3"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 384 pad: 1 kernel_size: 3
    weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
layer { name: "conv4" type: "Convolution" bottom: "conv3" top: "conv4"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 384 pad: 1 kernel_size: 3 group: 2
    weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 1 } } }
layer { name: "relu4" type: "ReLU" bottom: "conv4" top: "conv4" }
layer { name: "conv5" type: "Convolution" bottom: "conv4" top: "conv5"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 256 pad: 1 kernel_size: 3 group: 2
    weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 1 } } }
layer { name: "relu5" type: "ReLU" bottom: "conv5" top: "conv5" }
layer { name: "pool5" type: "Pooling" bottom: "conv5" top: "pool5"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 4096 weight_filler { type: "gaussian" std: 0.005 }
    bias_filler { type: "constant" value: 1 } } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 4096 weight_filler { type: "gaussian" std: 0.005 }
    bias_filler { type: "constant" value: 1 } } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "drop7" type: "Dropout" bottom: "fc7" top: "fc7" }
layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 1000 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc8" bottom: "label" top: "loss" }
"""


class FixedFeed:
    """The same random batch every pass (data loading is not what is measured)."""

    tops = ("data", "label")

    def __init__(self, batch: int, size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.batch = {"data": torch.randn(batch, 3, size, size, generator=g) * 50,
                      "label": torch.randint(0, 1000, (batch,), generator=g).float()}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.batch.items()}

    def next_batch(self) -> dict[str, torch.Tensor]:
        return self.batch

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass


def make_solver(batch: int, size: int) -> Solver:
    from google.protobuf import text_format

    param = caffe_pb2.SolverParameter(base_lr=0.001, lr_policy="step", gamma=0.1,
                                      stepsize=100000, momentum=0.9, weight_decay=0.0005,
                                      max_iter=1000, display=0)
    text_format.Parse(NET, param.net_param)
    return Solver(param, feeds={"data": FixedFeed(batch, size)})


def time_modelport(solver: Solver, steps: int) -> float:
    solver.step(1)  # warm-up
    start = time.perf_counter()
    solver.step(steps)
    return time.perf_counter() - start


def time_torch_optim(solver: Solver, steps: int) -> float:
    """The same module, forward/backward, then torch.optim.SGD with lr_mult/decay_mult groups."""
    groups = [{"params": [p.tensor], "lr": 0.001 * p.lr_mult,
               "weight_decay": 0.0005 * p.decay_mult}
              for p in solver.params if p.trainable]
    opt = torch.optim.SGD(groups, lr=0.001, momentum=0.9)
    net = solver.net

    def one() -> None:
        opt.zero_grad(set_to_none=True)
        objective, _ = net.forward()
        objective.backward()
        opt.step()

    one()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=227)
    args = ap.parse_args()
    torch.manual_seed(0)
    solver = make_solver(args.batch, args.size)
    n_params = sum(p.tensor.numel() for p in solver.params)
    print(f"CaffeNet-sized net: {n_params / 1e6:.1f}M learnable values, batch {args.batch}, "
          f"{args.size}x{args.size}, {torch.get_num_threads()} threads")
    ours = time_modelport(solver, args.steps)
    peer = time_torch_optim(solver, args.steps)
    ips_ours = args.batch * args.steps / ours
    ips_peer = args.batch * args.steps / peer
    print(f"modelport Solver (Caffe SGD): {ips_ours:8.1f} images/s")
    print(f"torch.optim.SGD, same module: {ips_peer:8.1f} images/s")
    print(f"ratio modelport / torch.optim: {ips_ours / ips_peer:.3f}")


if __name__ == "__main__":
    main()
