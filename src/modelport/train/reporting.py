"""What a training run tells its user: Caffe-style log lines, a progress bar, a metrics CSV and
(when the `tensorboard` package is importable) TensorBoard scalars.

Log lines use Caffe's wording (solver.cpp, sgd_solver.cpp) so tools that parse caffe.log
(plot_training_log.py, parse_log.sh) keep working:
`Iteration 20 (5.1 iter/s, 3.9s/20 iters), loss = 0.53`, `    Train net output #0: loss = 0.53
(* 1 = 0.53 loss)`, `Iteration 20, lr = 0.01`, `Iteration 20, Testing net (#0)`,
`    Test net output #0: accuracy = 0.9`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from modelport.atomic import make_folder
from modelport.errors import ConfigError

LOG = logging.getLogger("modelport.train")

# Metrics CSV columns before the net's output blobs (total_loss: sum of loss_weight * top).
_FIXED = ("iter", "phase", "total_loss", "smoothed_loss", "lr")


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
                  display_every: int = 1) -> None:
        """One training iteration `it` (before its update); outputs: (name, value, weight)."""
        if display:
            speed = ""
            if rate is not None and lapse is not None:
                speed = f" ({g6(rate)} iter/s, {g6(lapse)}s/{display_every} iters)"
            LOG.info("Iteration %d%s, loss = %s", it, speed, g6(smoothed))
            for i, (name, value, weight) in enumerate(outputs):
                extra = f" (* {g6(weight)} = {g6(weight * value)} loss)" if weight else ""
                LOG.info("    Train net output #%d: %s = %s%s", i, name, g6(value), extra)
            LOG.info("Iteration %d, lr = %s", it, g6(lr))
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
        LOG.info("Iteration %d, Testing net (#%d)", it, net_id)
        if loss is not None:
            LOG.info("Test loss: %s", g6(loss))
        for i, (name, value, weight) in enumerate(outputs):
            extra = f" (* {g6(weight)} = {g6(weight * value)} loss)" if weight else ""
            LOG.info("    Test net output #%d: %s = %s%s", i, name, g6(value), extra)
        row: dict[str, Any] = {"iter": it, "phase": f"test{net_id}"}
        if loss is not None:
            row["total_loss"] = loss
        row.update({name: value for name, value, _ in outputs})
        self._write_row(row)
        if self._tb is not None:
            for name, value, _ in outputs:
                self._tb.add_scalar(f"test{net_id}/{name}", value, it)

    def message(self, text: str, *args: Any) -> None:
        LOG.info(text, *args)

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
