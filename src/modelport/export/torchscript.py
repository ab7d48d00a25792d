"""TorchScript (`torch.jit.trace`) and torch.export (`.pt2`) files of a converted net.

Both are round-tripped before anything is written: the file's bytes are loaded back
(`torch.jit.load` / `torch.export.load`), run on the same inputs as the live module, and must
match it within the tolerance. A TorchScript trace fixes the input shapes it was traced with;
an exported program keeps the batch axis symbolic with `dynamic_batch`.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modelport.atomic import write_bytes
from modelport.export.common import (
    DEFAULT_REL,
    BlobOutputs,
    ExportError,
    ExportReport,
    compare_outputs,
    example_inputs,
    first_line,
    other_batch,
    other_data,
    quiet_exporters,
    reference_outputs,
)

if TYPE_CHECKING:
    from modelport.backends.torch_module import CaffeNet


def _run(fn: Callable[..., Any], names: Sequence[str], output_names: Sequence[str],
         feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    args = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in names]
    with torch.no_grad():
        outs = fn(*args)
    if isinstance(outs, torch.Tensor):
        outs = (outs,)
    return {n: t.detach().float().numpy() for n, t in zip(output_names, outs)}


def export_torchscript(net: CaffeNet, path: str | os.PathLike[str] | None, *,
                       inputs: Mapping[str, np.ndarray] | None = None,
                       outputs: Sequence[str] | None = None,
                       rel: float = DEFAULT_REL) -> tuple[bytes, ExportReport]:
    """Trace `net` into a TorchScript archive at `path` (None: only build and check).

    The archive's forward takes the inputs positionally (in the net's input order) and returns
    a tuple of the output blobs; it runs without modelport installed (`torch.jit.load`).
    """
    view = BlobOutputs(net, outputs)
    feed = example_inputs(net, inputs)
    args = tuple(torch.from_numpy(feed[n]) for n in view.input_names)
    try:
        with quiet_exporters(), torch.no_grad():
            traced = torch.jit.trace(view, args, check_trace=False, strict=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf)
    except Exception as exc:  # the tracer fails with many exception types
        raise ExportError(f"TorchScript tracing failed ({first_line(exc)}). Fix: export ONNX or "
                          "an exported program (--exported-program) instead") from None
    data = buf.getvalue()
    try:
        with quiet_exporters():
            loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:  # TorchScript's own printer can write code its parser refuses
        raise ExportError(f"the traced TorchScript archive does not load back "
                          f"({first_line(exc)}); nothing was written. Fix: export ONNX or "
                          "an exported program (--exported-program) instead") from None
    report = ExportReport(path=os.fspath(path) if path is not None else "<memory>",
                          format="TorchScript", outputs=list(view.output_names))
    # A trace records one path through Python control flow: it is also run on other data, so
    # a net whose computation depends on the values (SSD's NMS) is refused, not baked in.
    for arrays, what in ((feed, "the example inputs"), (other_data(feed), "other data")):
        ref = reference_outputs(view, arrays)
        got = _run(loaded, view.input_names, view.output_names, arrays)
        for name, d in compare_outputs(ref, got, f"TorchScript round trip on {what}",
                                       rel).items():
            report.max_diff[name] = max(report.max_diff.get(name, 0.0), d)
    report.checked_batches.append(int(args[0].shape[0]) if args else 0)
    if path is not None:
        write_bytes(path, data)
    return data, report


def _program_error(net: CaffeNet, view: BlobOutputs, feed: Mapping[str, np.ndarray],
                   args: tuple[torch.Tensor, ...], dynamic_batch: bool,
                   exc: BaseException) -> ExportError:
    """The error for a failed torch.export: with a symbolic batch, whether the net captures
    at a fixed batch (then the net fixes its batch size, e.g. a Reshape with a literal batch
    dim); otherwise the first layer that cannot be captured on its own."""
    if dynamic_batch:
        try:
            with quiet_exporters(), torch.no_grad():
                torch.export.export(view, args, strict=False)
        except Exception:  # noqa: BLE001  (fails at a fixed batch too: blame a layer below)
            pass
        else:
            return ExportError(f"torch.export cannot make the batch axis symbolic "
                               f"({first_line(exc)}): the net computes with a fixed batch "
                               "size (e.g. a Reshape or Flatten whose shape spells out the "
                               "batch). Fix: export without --dynamic-batch (the program then "
                               "takes the declared batch size)")
    from modelport.export.onnx import blame_layer

    blame = blame_layer(net, feed)
    where = f"{blame}: " if blame else ""
    return ExportError(f"{where}torch.export failed ({first_line(exc)}). Fix: export "
                       "TorchScript instead")


def export_program(net: CaffeNet, path: str | os.PathLike[str] | None, *,
                   inputs: Mapping[str, np.ndarray] | None = None,
                   outputs: Sequence[str] | None = None, dynamic_batch: bool = False,
                   rel: float = DEFAULT_REL) -> tuple[Any, ExportReport]:
    """Capture `net` with torch.export and save the ExportedProgram (`.pt2`) at `path`.

    Load it with `torch.export.load(path).module()`; with `dynamic_batch` the batch axis is
    symbolic (checked at two batch sizes before writing; a net declared at batch 1 is traced
    at batch 2, since torch.export fixes size-1 axes).
    """
    loaded, report, data = build_program(net, inputs=inputs, outputs=outputs,
                                         dynamic_batch=dynamic_batch, rel=rel)
    if path is not None:
        report.path = os.fspath(path)
        write_bytes(path, data)
    return loaded, report


def build_program(net: CaffeNet, *, inputs: Mapping[str, np.ndarray] | None = None,
                  outputs: Sequence[str] | None = None, dynamic_batch: bool = False,
                  rel: float = DEFAULT_REL) -> tuple[Any, ExportReport, bytes]:
    """`export_program` without writing: the loaded-back program, the report and the checked
    `.pt2` bytes."""
    view = BlobOutputs(net, outputs)
    feed = example_inputs(net, inputs)
    trace_feed = feed
    dynamic: Any = None
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        dynamic = (tuple({0: batch} for _ in view.input_names),)
        if feed and min(int(a.shape[0]) if a.ndim else 0 for a in feed.values()) == 1:
            # torch.export specialises every size-1 dimension to the constant 1 ("Constraints
            # violated (batch)" for a net declared at batch 1, as open_nsfw is): trace with a
            # second row; batch 1 is still checked below.
            trace_feed = other_batch(feed)
    args = tuple(torch.from_numpy(trace_feed[n]) for n in view.input_names)
    try:
        with quiet_exporters(), torch.no_grad():
            program = torch.export.export(view, args, dynamic_shapes=dynamic, strict=False)
    except Exception as exc:  # torch.export fails with many exception types
        raise _program_error(net, view, feed, args, dynamic_batch, exc) from None
    # torch.export.save writes to a path; use a private temporary file, then move the checked
    # bytes into place atomically.
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = os.path.join(tmp, "program.pt2")
        with quiet_exporters():
            torch.export.save(program, tmp_path)
            loaded = torch.export.load(tmp_path)
        with open(tmp_path, "rb") as fh:
            data = fh.read()
    module = loaded.module()
    report = ExportReport(path="<memory>", format="torch.export program",
                          outputs=list(view.output_names))
    for arrays in [feed, other_data(feed)] + ([other_batch(feed)] if dynamic_batch else []):
        ref = reference_outputs(view, arrays)
        got = _run(module, view.input_names, view.output_names, arrays)
        size = int(next(iter(arrays.values())).shape[0]) if arrays else 0
        for name, d in compare_outputs(ref, got, f"exported program at batch {size}",
                                       rel).items():
            report.max_diff[name] = max(report.max_diff.get(name, 0.0), d)
        if size not in report.checked_batches:
            report.checked_batches.append(size)
    return loaded, report, data
