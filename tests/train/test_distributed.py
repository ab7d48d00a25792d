"""`torchrun --nproc_per_node=2 modelport train` (gloo on CPU) follows Caffe's multi-GPU
semantics: each process takes every other record (offset % 2 == rank) and the gradients are
averaged, so for a net without BatchNorm two processes at batch 4 train exactly like one
process at batch 8 over the same records."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from modelport.formats.caffe.caffemodel import read_caffemodel
from modelport.train.snapshot import read_solverstate
from modelport.train.solver import Solver

SOLVER_GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "solver"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["test_accuracy", "sgd_multistep_itersize_clip"])
def test_two_process_gloo_equals_one_process_double_batch(case: str,
                                                         tmp_path: pathlib.Path) -> None:
    """Also with iter_size 2 + gradient clipping: DDP reduces once after the accumulated
    passes (no_sync before), and clipping sees the averaged sum, as in Caffe."""
    src = SOLVER_GOLDEN / case
    for name in ("solver.prototxt", "train.prototxt", "test.prototxt", "train.h5", "test.h5",
                 "train_h5_list.txt", "test_h5_list.txt", "init.caffemodel"):
        if (src / name).exists():
            shutil.copy(src / name, tmp_path / name)
    single = tmp_path / "single"
    single.mkdir()
    for name in ("solver.prototxt", "test.prototxt", "train.h5", "test.h5",
                 "train_h5_list.txt", "test_h5_list.txt", "init.caffemodel"):
        if (src / name).exists():
            shutil.copy(src / name, single / name)
    text = (src / "train.prototxt").read_text()
    assert "batch_size: 4" in text
    (single / "train.prototxt").write_text(text.replace("batch_size: 4", "batch_size: 8"))

    torchrun = pathlib.Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "modelport", "train",
         "solver.prototxt", "--weights", "init.caffemodel", "--max-iter", "6", "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Data-parallel training on 2 processes" in proc.stderr

    ref = Solver(single / "solver.prototxt", workdir=single, weights=single / "init.caffemodel",
                 max_iter=6)
    ref.step(6)
    stored = {s.name: s.blobs for s in read_caffemodel(str(tmp_path / "snap_iter_6.caffemodel"))}
    for p in ref.params:
        got = stored[p.layer][p.blob].data
        want = p.tensor.detach().numpy()
        assert float(np.abs(got - want).max()) <= 1e-5 * max(1.0, float(np.abs(want).max())), \
            f"{p.layer} blob {p.blob}"
    state = read_solverstate(tmp_path / "snap_iter_6.solverstate")
    for h, want in zip(state.history, ref.history):
        assert float(np.abs(h - want.numpy()).max()) <= 1e-5
