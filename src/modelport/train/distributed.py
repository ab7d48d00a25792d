"""Data-parallel training under `torchrun --nproc_per_node=N` (DistributedDataParallel).

Caffe's multi-GPU training (`caffe train -gpu 0,1,...`; P2PSync in rc3-rc5, NCCL in 1.0,
parallel.cpp) runs one solver per device, each on its own batches: every data layer hands
solver `rank` the records whose running offset % solver_count == rank (DataLayer::Skip,
HDF5DataLayer::Skip), so one iteration sees solver_count x batch_size records. After the
backward passes the gradients are summed over solvers and scaled by 1/solver_count (NCCL
allreduce + caffe_gpu_scal in on_gradients_ready: "loss functions divide gradients by the batch
size, so to compensate for split batch ... divide by number of solvers"); then every solver runs
the same ApplyUpdate on identical averaged diffs, so weights stay identical. The displayed loss,
TestAll and snapshots are the root solver's.

modelport does the same: each process reads its shard (feeds.py), DistributedDataParallel
averages the gradients (its all-reduce divides by the world size, exactly Caffe's 1/N), and
ApplyUpdate runs unchanged on every rank. With iter_size > 1 the first iter_size-1 passes run
under `no_sync()` and the all-reduce happens once on the accumulated sum, which equals Caffe's
(the scaling is linear). BatchNorm running sums stay per process (broadcast_buffers=False), as in
Caffe where each solver's forward pass updates its own copy; rank 0's are the ones snapshotted.
Rank 0 alone logs, tests and writes snapshots.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from modelport.train.solver import PhaseNet, Solver


class _TrainStep(nn.Module):
    """The train net's forward + objective as one module, so DDP sees the forward pass."""

    def __init__(self, phase_net: PhaseNet) -> None:
        super().__init__()
        self.net = phase_net.module
        self.phase_net = phase_net

    def forward(self, inputs: Mapping[str, torch.Tensor],
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # mypy reads **inputs against the bool keyword of forward_blobs; all are tensors
        blobs = self.net.forward_blobs(**inputs)  # type: ignore[arg-type]
        return self.phase_net.objective(blobs), blobs


def world_from_env() -> tuple[int, int]:
    """(rank, world size) as torchrun sets them; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def init_process_group(device: str) -> tuple[int, int]:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA)."""
    import torch.distributed as dist

    rank, world = world_from_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return rank, world


def shutdown_process_group(wait: bool) -> None:
    """Leave the process group cleanly: with `wait`, after every process has finished (rank 0
    may still be writing snapshots); a process that simply exits while gloo's threads are alive
    aborts ("terminate called without an active exception") and torchrun reports a failure."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def make_distributed(solver: Solver, **ddp_kwargs: Any) -> Solver:
    """Wrap the solver's train net in DistributedDataParallel (call in every process)."""
    from torch.nn.parallel import DistributedDataParallel

    if solver.world <= 1:
        return solver
    trainable = [p.tensor for p in solver.params if p.trainable]
    if not trainable:
        return solver
    ddp_kwargs.setdefault("broadcast_buffers", False)
    ddp_kwargs.setdefault("find_unused_parameters", True)
    step = _TrainStep(solver.net)
    device_ids = [solver.device.index] if solver.device.type == "cuda" else None
    solver.ddp = DistributedDataParallel(step, device_ids=device_ids, **ddp_kwargs)
    return solver
