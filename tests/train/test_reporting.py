"""Caffe-style log lines, the metrics CSV and the progress bar of a training run."""

from __future__ import annotations

import csv
import logging
import pathlib
import shutil

import pytest

from modelport.cli import main
from modelport.train.reporting import Reporter
from modelport.train.solver import Solver

CASE = pathlib.Path(__file__).parents[1] / "golden" / "solver" / "multi_loss_weights"


def test_log_lines_csv_and_bar(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("solver.prototxt", "train.prototxt", "train.h5", "train_h5_list.txt",
                 "init.caffemodel"):
        shutil.copy(CASE / name, tmp_path / name)
    reporter = Reporter(progress=True, metrics_csv=str(tmp_path / "m.csv"))
    solver = Solver(tmp_path / "solver.prototxt", workdir=tmp_path,
                    weights=tmp_path / "init.caffemodel", reporter=reporter)
    with caplog.at_level(logging.INFO, logger="modelport.train"):
        solver.step(2)
    reporter.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("Iteration 0 (0 iter/s, ") and ", loss = " in lines[0]
    # the aux loss (loss_weight 0.3) is reported as Caffe does: value (* weight = product loss)
    aux = [ln for ln in lines if "aux_loss =" in ln][0]
    value = float(aux.split("aux_loss = ")[1].split()[0])
    assert aux.startswith("    Train net output #") and "(* 0.3 = " in aux
    assert float(aux.split("(* 0.3 = ")[1].split()[0]) == pytest.approx(0.3 * value, rel=1e-5)
    assert "Iteration 0, lr = 0.05" in lines
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert [r["iter"] for r in rows] == ["0", "1"]
    assert set(rows[0]) >= {"total_loss", "smoothed_loss", "lr", "aux_loss", "loss", "accuracy"}
    total = float(rows[0]["total_loss"])
    assert total == pytest.approx(float(rows[0]["loss"]) + 0.3 * float(rows[0]["aux_loss"]),
                                  rel=1e-6)


def test_cli_refuses_weights_with_resume(tmp_path: pathlib.Path) -> None:
    assert main(["train", str(CASE / "solver.prototxt"), "--weights", "a.caffemodel",
                 "--resume", "b.solverstate", "--no-progress"]) == 2


def test_average_loss_smoothing(tmp_path: pathlib.Path) -> None:
    """Caffe's UpdateSmoothedLoss: the mean of the last average_loss iteration losses."""
    for name in ("solver.prototxt", "train.prototxt", "train.h5", "train_h5_list.txt",
                 "init.caffemodel"):
        shutil.copy(CASE / name, tmp_path / name)
    seen: list[float] = []

    class Keep(Reporter):
        def iteration(self, it: int, loss: float, smoothed: float, *args: object,
                      **kwargs: object) -> None:
            seen.append(smoothed)

    solver = Solver(tmp_path / "solver.prototxt", workdir=tmp_path,
                    weights=tmp_path / "init.caffemodel", reporter=Keep())
    solver.param.average_loss = 3
    solver.step(6)
    losses = [r.loss for r in solver.records]
    for k, smoothed in enumerate(seen):
        window = losses[max(0, k - 2): k + 1]
        assert smoothed == pytest.approx(sum(window) / len(window), rel=1e-6)
