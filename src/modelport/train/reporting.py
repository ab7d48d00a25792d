"""What a training run tells its user: Caffe-style log lines, a progress bar, a metrics CSV and
(when the `tensorboard` package is importable) TensorBoard scalars.

Log lines use Caffe's wording (solver.cpp, sgd_solver.cpp) and, through `GlogFormatter`,
glog's prefix with the source location Caffe 1.0 logs them from, so the tools that parse
caffe.log (tools/extra/parse_log.py, parse_log.sh, extract_seconds.py, plot_training_log.py)
read a `modelport train` log as they read Caffe's:
`I1202 02:04:41.123456 12345 solver.cpp:239] Iteration 20 (5.1 iter/s, 3.9s/20 iters), loss =
0.53`, `... solver.cpp:258]     Train net output #0: loss = 0.53 (* 1 = 0.53 loss)`,
`... sgd_solver.cpp:112] Iteration 20, lr = 0.01`, `... solver.cpp:347] Iteration 20, Testing
net (#0)`, `... solver.cpp:414]     Test net output #0: accuracy = 0.9`.
"""

from __future__ import annotations

import csv
import datetime
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from modelport.atomic import make_folder
from modelport.errors import ConfigError

LOG = logging.getLogger("modelport.train")

# Metrics CSV columns before the net's output blobs (total_loss: sum of loss_weight * top).
_FIXED = ("iter", "phase", "total_loss", "smoothed_loss", "lr")


# Where BVLC Caffe 1.0 (1.0.0+git20180821.99bd997, the build of the training goldens) logs each
# line modelport writes with Caffe's wording: glog's `file:line` field. The line numbers are
# those of its solver.cpp / sgd_solver.cpp / caffe.cpp (the goldens' caffe.log shows them).
CAFFE_SOURCE: dict[str, str] = {
    "Solving %s": "solver.cpp:289",
    "Learning Rate Policy: %s": "solver.cpp:290",
    "Restoring previous solver status from %s": "solver.cpp:296",
    "Optimization stopped early.": "solver.cpp:311",
    "Iteration %d, loss = %s": "solver.cpp:327",
    "Optimization Done.": "solver.cpp:332",
    "Snapshotting to binary proto file %s": "solver.cpp:464",
    "Snapshotting to HDF5 file %s": "solver.cpp:474",
    "Snapshotting solver state to binary proto file %s": "sgd_solver.cpp:284",
    "Snapshotting solver state to HDF5 file %s": "sgd_solver.cpp:296",
    "Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale factor %s":
        "sgd_solver.cpp:99",
    "MultiStep Status: Iteration %d, step = %d": "sgd_solver.cpp:50",
    "Test interrupted.": "solver.cpp:396",
    "SGDSolver: restoring history": "sgd_solver.cpp:336",
    "Use CPU.": "caffe.cpp:197",
    "Using GPUs %s": "caffe.cpp:204",
    "GPU %s: %s": "caffe.cpp:209",
    "Resuming from %s": "caffe.cpp:235",
    "Starting Optimization": "caffe.cpp:239",
}
# The lines Reporter writes itself.
_ITER_LOSS = "solver.cpp:239"
_TRAIN_OUTPUT = "solver.cpp:258"
_LR = "sgd_solver.cpp:112"
_TESTING = "solver.cpp:347"
_TEST_LOSS = "solver.cpp:401"
_TEST_OUTPUT = "solver.cpp:414"

_SEVERITY = {logging.DEBUG: "I", logging.INFO: "I", logging.WARNING: "W", logging.ERROR: "E",
             logging.CRITICAL: "F"}


class GlogFormatter(logging.Formatter):
    """glog's line format: `Lmmdd hh:mm:ss.uuuuuu threadid file:line] message`.

    L is the severity (I, W, E, F), the time is local with microseconds, the thread id is the
    OS thread id right-aligned in 5 columns (glog's setw(5)), and `file:line` is where Caffe
    logs that line (the record's `caffe_src`, see CAFFE_SOURCE) or else the Python file and
    line that logged it. A message of several lines gets the prefix on each line, so that
    parse_log.py (which reads the date of every line after the first `Iteration`) never meets
    a line without one."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage().rstrip("\n")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        when = datetime.datetime.fromtimestamp(record.created)
        letter = _SEVERITY.get(record.levelno, "I" if record.levelno < logging.WARNING else "E")
        source = getattr(record, "caffe_src", None) or f"{record.filename}:{record.lineno}"
        tid = getattr(record, "native_tid", None) or threading.get_native_id()
        prefix = (f"{letter}{when:%m%d %H:%M:%S}.{when.microsecond:06d} {tid:>5d} "
                  f"{source}] ")
        return "\n".join(prefix + line for line in text.split("\n"))


def _log(source: str, text: str, *args: Any, level: int = logging.INFO) -> None:
    LOG.log(level, text, *args, extra={"caffe_src": source})


def caffe_output_order(outputs: Sequence[tuple[str, float, float]]
                       ) -> list[tuple[str, float, float]]:
    """Outputs in the order Caffe numbers them (`output #i`): its net outputs are the blobs
    left in a std::set<string> (net.cpp), so by name in byte order; the elements of one blob
    stay in order."""
    return sorted(outputs, key=lambda o: o[0].encode("utf-8"))


def g6(x: float) -> str:
    """Format a number as glog/iostream does by default (6 significant digits)."""
    return f"{x:.6g}"


class Reporter:
    """Receives the solver's events; this base class only logs."""

    def __init__(self, progress: bool = False, metrics_csv: str | None = None,
                 tensorboard_dir: str | None = None, total: int | None = None,
                 console: Any = None) -> None:
        self._console = console
        self._bar: Any = None
        self._task: Any = None
        self._csv_file: TextIO | None = None
        self._csv: Any = None
        self._columns: list[str] = []
        self._csv_path = metrics_csv
        self._tb: Any = None
        if progress:
            self._start_bar(total)
        if tensorboard_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                LOG.info("tensorboard is not installed; not writing TensorBoard scalars")
            else:
                self._tb = SummaryWriter(tensorboard_dir)

    # -- progress bar ---------------------------------------------------------------------
    def _start_bar(self, total: int | None) -> None:
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )
        except ImportError:  # rich is a dependency, but keep training without a bar
            return
        self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                             transient=False,
                             **({"console": self._console} if self._console else {}))
        self._bar.start()
        self._task = self._bar.add_task("train", total=total, info="")

    def set_total(self, total: int, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total, completed=done)

    # -- events ---------------------------------------------------------------------------
    def iteration(self, it: int, loss: float, smoothed: float, lr: float,
                  outputs: Sequence[tuple[str, float, float]], display: bool,
                  rate: float | None = None, lapse: float | None = None,
                  display_every: int = 1, multistep_step: int | None = None) -> None:
        """One training iteration `it` (before its update); outputs: (name, value, weight).
        multistep_step: the new current_step when the multistep policy just advanced (Caffe's
        SGDSolver::GetLearningRate logs it on every iteration it happens, displayed or not,
        between the train outputs and the lr line)."""
        if display:
            speed = ""
            if rate is not None and lapse is not None:
                speed = f" ({g6(rate)} iter/s, {g6(lapse)}s/{display_every} iters)"
            _log(_ITER_LOSS, "Iteration %d%s, loss = %s", it, speed, g6(smoothed))
            for i, (name, value, weight) in enumerate(caffe_output_order(outputs)):
                extra = f" (* {g6(weight)} = {g6(weight * value)} loss)" if weight else ""
                _log(_TRAIN_OUTPUT, "    Train net output #%d: %s = %s%s", i, name, g6(value),
                     extra)
        if multistep_step is not None:
            self.message("MultiStep Status: Iteration %d, step = %d", it, multistep_step)
        if display:
            _log(_LR, "Iteration %d, lr = %s", it, g6(lr))
        row = {"iter": it, "phase": "train", "total_loss": loss, "smoothed_loss": smoothed,
               "lr": lr}
        row.update({name: value for name, value, _ in outputs})
        self._write_row(row)
        if self._tb is not None:
            self._tb.add_scalar("train/loss", loss, it)
            self._tb.add_scalar("train/lr", lr, it)
            for name, value, _ in outputs:
                self._tb.add_scalar(f"train/{name}", value, it)
        if self._bar is not None:
            self._bar.update(self._task, completed=it + 1,
                             info=f"loss {smoothed:.4g}  lr {lr:.3g}")

    def test(self, it: int, net_id: int, outputs: Sequence[tuple[str, float, float]],
             loss: float | None) -> None:
        _log(_TESTING, "Iteration %d, Testing net (#%d)", it, net_id)
        if loss is not None:
            _log(_TEST_LOSS, "Test loss: %s", g6(loss))
        for i, (name, value, weight) in enumerate(caffe_output_order(outputs)):
            extra = f" (* {g6(weight)} = {g6(weight * value)} loss)" if weight else ""
            _log(_TEST_OUTPUT, "    Test net output #%d: %s = %s%s", i, name, g6(value), extra)
        row: dict[str, Any] = {"iter": it, "phase": f"test{net_id}"}
        if loss is not None:
            row["total_loss"] = loss
        row.update({name: value for name, value, _ in outputs})
        self._write_row(row)
        if self._tb is not None:
            for name, value, _ in outputs:
                self._tb.add_scalar(f"test{net_id}/{name}", value, it)

    def message(self, text: str, *args: Any, level: int = logging.INFO,
                source: str | None = None) -> None:
        """A log line; one with Caffe's wording (CAFFE_SOURCE) carries Caffe's source
        location (or `source`), any other the location of the caller."""
        source = source or CAFFE_SOURCE.get(text)
        if source is not None:
            _log(source, text, *args, level=level)
        else:
            LOG.log(level, text, *args, stacklevel=2)

    # -- metrics CSV ----------------------------------------------------------------------
    def open_csv(self, path: str) -> None:
        """Write the metrics CSV to `path` (unless a path was given already)."""
        if self._csv_path is None:
            self._csv_path = path

    def set_columns(self, names: Sequence[str]) -> None:
        """The output columns of the metrics CSV (train and test outputs), before any row."""
        self._columns = [n for n in dict.fromkeys(names)
                         if n not in _FIXED]

    def _write_row(self, row: Mapping[str, Any]) -> None:
        """Append one row to the metrics CSV: a live log, flushed after every row."""
        if self._csv_path is None:
            return
        if self._csv_file is None:
            folder = os.path.dirname(os.path.abspath(self._csv_path))
            make_folder(folder, "metrics CSV folder")
            try:
                self._csv_file = open(self._csv_path, "w", newline="",  # noqa: SIM115
                                      encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot write the metrics CSV '{self._csv_path}': "
                                  f"{exc.strerror or exc}. Fix: give a writable --metrics "
                                  "path") from None
            fields = [*_FIXED, *self._columns]
            self._csv = csv.DictWriter(self._csv_file, fieldnames=fields, extrasaction="ignore")
            self._csv.writeheader()
        self._csv.writerow({k: _fmt(v) for k, v in row.items()})
        self._csv_file.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _fmt(v: Any) -> Any:
    return f"{v:.9g}" if isinstance(v, float) else v
