"""`modelport train` writes a log that Caffe's log tools read as they read Caffe's own log.

The rules of BVLC Caffe 1.0's tools/extra/parse_log.py (its regular expressions, its row logic
and extract_seconds.py's date parsing) and of parse_log.sh (its sed range, grep patterns and awk
fields) are written out below as facts; both logs of the same run -- the golden one Caffe wrote
(golden/solver/test_accuracy/caffe.log) and ours -- must give the same tables. (Run by hand,
the tools themselves print exactly the tables these functions compute from our log.) Also:
caffe train's flags, GPU requests without CUDA, and a net prototxt where a solver belongs.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import pathlib
import re
import shutil
from collections import OrderedDict
from typing import Any

import pytest

from modelport.cli import main
from modelport.commands.train import choose_device
from modelport.formats.caffe import caffe_pb2

CASE = pathlib.Path(__file__).parents[1] / "golden" / "solver" / "test_accuracy"
CAFFE_LOG = (CASE / "caffe.log").read_text().splitlines()
TRACE = json.loads((CASE / "trace.json").read_text())
FILES = ("solver.prototxt", "train.prototxt", "test.prototxt", "train.h5", "test.h5",
         "train_h5_list.txt", "test_h5_list.txt", "init.caffemodel")


# ------------------------------------------------------------------ parse_log.py's rules

class ParseExit(Exception):
    """extract_seconds.py prints 'Unexpected error when parsing line' and exits."""


def line_datetime(line: str, year: int) -> datetime.datetime:
    """extract_seconds.extract_datetime_from_line: fields 0 (Lmmdd) and 1 (hh:mm:ss.micro)."""
    fields = line.strip().split()
    try:
        month, day = int(fields[0][1:3]), int(fields[0][3:])
        stamp = fields[1]
        pos = stamp.rfind(".")
        hour, minute, second = (int(x) for x in stamp[:pos].split(":"))
        return datetime.datetime(year, month, day, hour, minute, second, int(stamp[pos + 1:]))
    except (ValueError, IndexError):
        raise ParseExit(line) from None


ITERATION = re.compile(r"Iteration (\d+)")
TRAIN_OUTPUT = re.compile(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)")
TEST_OUTPUT = re.compile(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+)")
LEARNING_RATE = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")


def _net_output(regex: re.Pattern[str], row: Any, rows: list[Any], line: str,
                iteration: float, seconds: float | None, lr: float) -> Any:
    """parse_log.parse_line_for_net_output: a row per iteration, pushed when full."""
    match = regex.search(line)
    if match:
        if not row or row["NumIters"] != iteration:
            if row:
                rows.append(row)
            row = OrderedDict([("NumIters", iteration), ("Seconds", seconds),
                               ("LearningRate", lr)])
        row[match.group(2)] = float(match.group(3))
    if row and len(rows) >= 1 and len(row) == len(rows[0]):
        rows.append(row)
        row = None
    return row


def parse_log_py(lines: list[str], year: int, with_seconds: bool = True
                 ) -> tuple[list[Any], list[Any]]:
    """parse_log.parse_log: (train rows, test rows). The lines up to the first 'Solving' line
    only give the start time (without one, the tool cannot compute seconds: with_seconds=False
    skips that for Caffe's golden log, which pycaffe wrote without Solve())."""
    it = iter(lines)
    start = None
    if with_seconds:
        for line in it:
            if "Solving" in line:
                start = line_datetime(line.strip(), year)
                break
        assert start is not None, "no 'Solving' line: parse_log.py cannot start"
    iteration, lr = -1.0, float("nan")
    train: list[Any] = []
    test: list[Any] = []
    train_row = test_row = None
    for line in it:
        match = ITERATION.search(line)
        if match:
            iteration = float(match.group(1))
        if iteration == -1:
            continue
        seconds = ((line_datetime(line, year) - start).total_seconds()
                   if start is not None else None)
        match = LEARNING_RATE.search(line)
        if match:
            lr = float(match.group(1))
        train_row = _net_output(TRAIN_OUTPUT, train_row, train, line, iteration, seconds, lr)
        test_row = _net_output(TEST_OUTPUT, test_row, test, line, iteration, seconds, lr)
    for rows in (train, test):  # fix_initial_nan_learning_rate
        if len(rows) > 1:
            rows[0]["LearningRate"] = rows[1]["LearningRate"]
    return train, test


# ------------------------------------------------------------------ parse_log.sh's rules
# (Caffe 1.0's version: a sed range from 'Testing net' for the test table, awk -F = for losses)

def _awk(line: str, n: int) -> str:
    fields = line.split()
    return fields[n - 1] if len(fields) >= n else ""


def _sed_iteration(line: str) -> str:
    """sed 's/.*Iteration \\([[:digit:]]*\\).*/\\1/g' (greedy: the last 'Iteration ')."""
    match = re.match(r".*Iteration ([0-9]*).*", line)
    return match.group(1) if match else line


def _sed_range(lines: list[str], first: str, last: str) -> list[str]:
    """sed -n '/first/,/last/p': from a line matching `first` through the next line (after
    it) matching `last`, or to the end; then again from the next `first`."""
    out: list[str] = []
    inside = False
    for line in lines:
        if inside:
            out.append(line)
            inside = not re.search(last, line)
        elif re.search(first, line):
            out.append(line)
            inside = True
    return out


def parse_log_sh(lines: list[str], year: int | None) -> tuple[list[list[str]], list[list[str]]]:
    """parse_log.sh's columns: train (iters, seconds, awk -F = $2 of ', loss = ' lines, $9 of
    ', lr = ' lines) and test (iters, seconds, $11 of 'Test net output #0' / '#1' lines);
    seconds by extract_seconds.py from the '] Solving ' line (year None: not computed)."""
    def seconds(aux: list[str]) -> list[str]:
        if year is None:
            return []
        starts = [ln for ln in aux if "Solving" in ln]
        assert starts, "extract_seconds.py: Start time not found"
        t0 = line_datetime(starts[0], year)
        return [f"{(line_datetime(ln, year) - t0).total_seconds():f}" for ln in aux
                if "Iteration" in ln]

    aux = _sed_range(lines, r"Iteration .* Testing net", r"Iteration *. loss")
    for dropped in (r"Waiting for data", r"prefetch queue empty", r"Iteration .* loss",
                    r"Iteration .* lr", r"Train net"):
        aux = [ln for ln in aux if not re.search(dropped, ln)]
    test_cols = [[_sed_iteration(ln) for ln in aux if "Iteration " in ln],
                 seconds([ln for ln in lines if "] Solving " in ln]
                         + [ln for ln in lines if "Testing net" in ln]),
                 [_awk(ln, 11) for ln in aux if "Test net output #0" in ln],
                 [_awk(ln, 11) for ln in aux if "Test net output #1" in ln]]
    aux = [ln for ln in lines if "] Solving " in ln] + [ln for ln in lines if ", loss = " in ln]
    train_cols = [[_sed_iteration(ln) for ln in aux if "Iteration " in ln], seconds(aux),
                  [ln.split("=")[1].strip() for ln in lines if ", loss = " in ln],
                  [_awk(ln, 9) for ln in lines if ", lr = " in ln]]
    return train_cols, test_cols


# ------------------------------------------------------------------ running modelport train

def _case(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    for name in FILES:
        shutil.copy(CASE / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)  # Caffe's paths are relative to where it runs
    return tmp_path


def _train(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["train", *argv, "--no-progress"])
    return code, capsys.readouterr().err.splitlines()


def _close(a: float, b: float) -> bool:
    """The project's tolerance, on numbers both sides printed with 6 significant digits."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-4 * max(1.0, abs(b))


def _same_rows(ours: list[Any], caffe: list[Any]) -> None:
    assert len(ours) == len(caffe)
    for mine, ref in zip(ours, caffe):
        assert list(mine) == list(ref)  # the same columns in the same order
        for key in ref:
            if key != "Seconds":
                assert _close(mine[key], ref[key]), (key, mine, ref)


def test_parse_log_reads_our_log_as_caffes(tmp_path: pathlib.Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _case(tmp_path, monkeypatch)
    code, lines = _train(["solver.prototxt", "--weights", "init.caffemodel"], capsys)
    assert code == 0
    year = datetime.date.today().year
    glog = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [\w.]+:\d+\] ")
    assert lines and all(glog.match(ln) for ln in lines), [ln for ln in lines
                                                            if not glog.match(ln)][:3]
    assert re.search(r" solver\.cpp:239\] Iteration 3 \([\d.e+-]+ iter/s, [\d.e+-]+s/1 "
                     r"iters\), loss = 1\.709", "\n".join(lines))
    assert any(" sgd_solver.cpp:112] Iteration 3, lr = 0.1" in ln for ln in lines)

    train, test = parse_log_py(lines, year)
    ref_train, ref_test = parse_log_py(CAFFE_LOG, year, with_seconds=False)
    assert [r["NumIters"] for r in ref_train] == list(range(10))
    _same_rows(train, ref_train)
    assert [r["NumIters"] for r in ref_test] == [0, 5]
    # Solve() tests once more after max_iter (pycaffe's step() that wrote Caffe's log did not):
    # that row is Caffe's trace.
    assert [r["NumIters"] for r in test] == [0, 5, 10]
    _same_rows(test[:2], ref_test)
    final = {k: v[2] for k, v in TRACE["test"]["outputs"].items()}
    assert all(_close(test[2][k], v) for k, v in final.items())
    secs = [r["Seconds"] for r in train + test]
    assert all(s >= 0 for s in secs)
    assert [r["Seconds"] for r in train] == sorted(r["Seconds"] for r in train)

    # parse_log.sh: the same columns as from Caffe's log.
    (iters, seconds, losses, lrs), (t_iters, t_seconds, t_out0, t_out1) = parse_log_sh(lines,
                                                                                       year)
    (ref_iters, _, ref_losses, ref_lrs), (rt_iters, _, rt_out0, rt_out1) = parse_log_sh(
        CAFFE_LOG, None)
    assert iters[:10] == ref_iters == [str(k) for k in range(10)]
    assert iters[10:] == ["10"]  # Solve()'s last 'Iteration 10, loss = ...' (a forward pass)
    assert all(_close(float(a), float(b)) for a, b in zip(losses, ref_losses, strict=False))
    assert len(losses) == 11 and len(ref_losses) == 10
    assert lrs == ref_lrs == ["0.1"] * 10
    assert len(seconds) == len(iters) and all(float(s) >= 0 for s in seconds)
    assert t_iters == ["0", "5", "10"] and rt_iters == ["0", "5"]
    assert len(t_seconds) == 3
    for ours, ref in ((t_out0, rt_out0), (t_out1, rt_out1)):  # accuracy_top1, accuracy_top2
        assert len(ours) == 3 and len(ref) == 2
        assert all(_close(float(a), float(b)) for a, b in zip(ours, ref, strict=False))
    assert _close(float(t_out0[2]), TRACE["test"]["outputs"]["accuracy_top1"][2])


def test_a_line_without_the_prefix_stops_parse_log() -> None:
    """The check above can fail: parse_log.py dies on the HH:MM:SS lines modelport wrote."""
    old = ["04:17:55 Solving net", "04:17:55 Iteration 0, loss = 1.7",
           "04:17:55     Train net output #0: loss = 1.7 (* 1 = 1.7 loss)"]
    with pytest.raises((ParseExit, AssertionError)):
        parse_log_py(old, 2026)


def test_caffe_train_flags(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    _case(tmp_path, monkeypatch)
    code, lines = _train(["-solver", "solver.prototxt", "-weights=init.caffemodel",
                          "--max-iter", "4", "-iterations", "100"], capsys)
    assert code == 0, lines[-3:]
    text = "\n".join(lines)
    assert "-iterations 100 is ignored, as caffe train ignores it" in text
    assert " caffe.cpp:197] Use CPU." in text
    assert (tmp_path / "snap_iter_4.solverstate").is_file()
    code, lines = _train(["--solver=solver.prototxt", "-snapshot", "snap_iter_4.solverstate",
                          "--max-iter", "6"], capsys)
    assert code == 0, lines[-3:]
    assert any(" caffe.cpp:235] Resuming from snap_iter_4.solverstate" in ln for ln in lines)
    train, _ = parse_log_py(lines, datetime.date.today().year)
    assert [r["NumIters"] for r in train] == [4, 5]
    for row in train:  # the resumed iterations are Caffe's
        k = int(row["NumIters"])
        assert _close(row["loss"], TRACE["outputs"]["loss"][k])
    code, lines = _train(["-solver", "solver.prototxt", "-weights", "init.caffemodel",
                          "-snapshot", "snap_iter_4.solverstate"], capsys)
    assert code == 2 and "not both" in lines[-1]
    code, lines = _train(["-weights", "init.caffemodel"], capsys)
    assert code == 2 and "need a solver definition" in lines[-1] and "Fix:" in lines[-1]


def test_gpu_without_cuda_trains_on_the_cpu_and_says_so(tmp_path: pathlib.Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _case(tmp_path, monkeypatch)
    code, lines = _train(["-solver", "solver.prototxt", "-gpu", "0", "--max-iter", "1"],
                         capsys)
    assert code == 0
    warned = [ln for ln in lines if "CUDA is not available" in ln]
    assert len(warned) == 1 and warned[0].startswith("W") and "-gpu 0" in warned[0]
    text = (tmp_path / "solver.prototxt").read_text().replace("solver_mode: CPU",
                                                              "solver_mode: GPU\ndevice_id: 1")
    (tmp_path / "gpu_solver.prototxt").write_text(text)
    code, lines = _train(["gpu_solver.prototxt", "--max-iter", "1"], capsys)
    assert code == 0
    warned = [ln for ln in lines if "CUDA is not available" in ln]
    assert len(warned) == 1 and "solver_mode: GPU (device_id 1)" in warned[0]
    code, lines = _train(["gpu_solver.prototxt", "-gpu", "x1"], capsys)
    assert code == 2 and "-gpu 'x1' is not a device list" in lines[-1]


def test_gpu_requests_pick_cuda_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"card{i}")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    explicit = caffe_pb2.SolverParameter(solver_mode=caffe_pb2.SolverParameter.GPU, device_id=1)

    def args(**kw: Any) -> argparse.Namespace:
        return argparse.Namespace(**{"device": None, "gpu": None, **kw})

    assert choose_device(args(gpu="1"), caffe_pb2.SolverParameter())[0] == "cuda:1"
    device, lines = choose_device(args(), explicit)
    assert device == "cuda:1" and lines == ["Using GPUs 1", "GPU 1: card1"]
    # Caffe uses the GPU only when solver_mode is set: the schema default (GPU) is not a request
    assert choose_device(args(), caffe_pb2.SolverParameter())[0] == "cpu"
    assert choose_device(args(gpu="1"), caffe_pb2.SolverParameter(
        solver_mode=caffe_pb2.SolverParameter.CPU))[0] == "cuda:1"
    assert choose_device(args(device="cpu"), explicit) == ("cpu", [])
    from modelport.errors import ConfigError

    with pytest.raises(ConfigError, match="torchrun --standalone --nproc_per_node=2"):
        choose_device(args(gpu="all"), explicit)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert choose_device(args(gpu="0,1"), explicit)[0] == "cuda:1"
    with pytest.raises(ConfigError, match="GPU 3 does not exist"):
        choose_device(args(gpu="3"), explicit)


def test_a_net_prototxt_where_a_solver_belongs(tmp_path: pathlib.Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _train([str(CASE / "train.prototxt")], capsys)
    assert code == 2 and len(lines) == 1
    assert "train.prototxt' is a net prototxt (8 layers), not a solver" in lines[0]
    assert "Fix: pass the solver prototxt" in lines[0] and "net: " in lines[0]
    (tmp_path / "bad.prototxt").write_text("base_lr: 0.1\nnot_a_field: 3\n")
    code, lines = _train([str(tmp_path / "bad.prototxt")], capsys)
    assert code == 2 and "net prototxt" not in lines[-1] and "not_a_field" in lines[-1]


def test_python_warnings_are_glog_lines(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    from modelport.train import solver as solver_mod

    real = solver_mod.Solver.solve

    def solve(self: Any, resume: Any = None) -> None:
        warnings.warn("a library speaks\nin two lines", UserWarning, stacklevel=1)
        real(self, resume)

    monkeypatch.setattr(solver_mod.Solver, "solve", solve)
    _case(tmp_path, monkeypatch)
    code, lines = _train(["solver.prototxt", "--max-iter", "1"], capsys)
    assert code == 0
    warned = [ln for ln in lines if "a library speaks" in ln or "in two lines" in ln]
    assert len(warned) >= 2 and all(ln.startswith("W") for ln in warned)
    parse_log_py(lines, datetime.date.today().year)  # every line has the prefix
    from modelport.train.reporting import GlogFormatter

    assert not any(isinstance(h.formatter, GlogFormatter)  # the run took its handler away
                   for h in logging.getLogger("py.warnings").handlers)
