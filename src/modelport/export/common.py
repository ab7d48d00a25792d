"""What every exporter shares: the traced view of a net, example inputs, and the parity check
that decides whether an exported file may be written."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from modelport.errors import ConfigError, FormatError, ModelportError, ParityError
from modelport.verify.tolerance import DEFAULT_REL, Tolerance  # the one tolerance rule


class ExportError(ModelportError):
    """A net could not be exported (an operation without a standard equivalent, an exporter
    failure, or a result that would need a custom ONNX domain)."""


@dataclass
class ExportReport:
    """What an export wrote and how closely the written file reproduces the module."""

    path: str
    format: str
    outputs: list[str]
    max_diff: dict[str, float] = field(default_factory=dict)
    checked_batches: list[int] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)
    opset: int | None = None

    def summary(self) -> str:
        worst = max(self.max_diff.values(), default=0.0)
        ops = f", {len(self.ops)} op types" if self.ops else ""
        opset = f" opset {self.opset}" if self.opset else ""
        batches = ", ".join(str(b) for b in self.checked_batches)
        return (f"wrote {self.path} ({self.format}{opset}{ops}); checked at batch {batches}: "
                f"max|diff| {worst:.3g} over {len(self.outputs)} output(s)")


class BlobOutputs(nn.Module):
    """A converted net seen as a function of positional inputs returning a tuple of named blobs:
    the fixed signature tracers and exporters need (inputs in `input_names` order).

    `net` is a live CaffeNet or the `Net` of a generated model.py: anything with `input_names`,
    `output_names` and `forward_blobs(*inputs) -> {blob name: tensor}`.
    """

    def __init__(self, net: Any, outputs: Sequence[str] | None = None) -> None:
        super().__init__()
        self.net = net
        self.input_names: list[str] = list(net.input_names)
        self.output_names: list[str] = list(outputs) if outputs else list(net.output_names)
        known = set(getattr(net, "blob_shapes", {})) | set(self.input_names)
        unknown = [o for o in self.output_names if o not in known]
        if unknown and hasattr(net, "blob_shapes"):
            raise ConfigError(f"requested output blob(s) {', '.join(unknown)} are not in the net; "
                              f"blobs are {', '.join(sorted(known))}")
        # Only the layers the requested outputs depend on run (a CaffeNet's run order is
        # known): exporting an SSD head must not trace the DetectionOutput behind it.
        self.run_plan: list[tuple[Any, str]] | None = None
        if hasattr(net, "run_order"):
            needed = set(self.output_names)
            plan = []
            for layer, key in reversed(net.run_order):
                if any(t in needed for t in layer.tops):
                    plan.append((layer, key))
                    needed.update(layer.bottoms)
            self.run_plan = plan[::-1]
        self.train()  # always inference mode, see train()

    def train(self, mode: bool = True) -> BlobOutputs:
        # Exporters switch modules to training mode and back around tracing; a deploy view
        # stays in inference mode whatever they restore (TRAIN-phase Dropout would fire).
        return super().train(False)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.run_plan is None:
            blobs = self.net.forward_blobs(*inputs)  # type: ignore[operator]  # see __init__
            return tuple(blobs[name] for name in self.output_names)
        blobs = dict(zip(self.input_names, inputs))
        modules = self.net._modules
        for layer, key in self.run_plan:
            out = modules[key](*[blobs[b] for b in layer.bottoms])
            outs = out if isinstance(out, tuple | list) else (out,)
            for top, t in zip(layer.tops, outs):
                blobs[top] = t
        return tuple(blobs[name] for name in self.output_names)


def check_conversion_folder(folder: str) -> None:
    """`folder` must hold a `modelport convert` output (model.py, model.safetensors,
    conversion.json) to be exported from: else a ConfigError naming the files it lacks."""
    from modelport.convert import MODEL_FILE, REPORT_FILE, WEIGHTS_FILE

    missing = [f for f in (MODEL_FILE, WEIGHTS_FILE, REPORT_FILE)
               if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise ConfigError(f"'{folder}' is not a modelport conversion folder (no "
                          f"{', '.join(missing)}). Fix: run `modelport convert ... -o "
                          f"{folder}` first, or pass deploy.prototxt and weights.caffemodel")


def read_conversion_record(folder: str) -> dict[str, Any]:
    """The conversion.json of a conversion folder (`check_conversion_folder` first); a file
    that is not a JSON object is a FormatError naming it."""
    from modelport.convert import REPORT_FILE

    path = os.path.join(folder, REPORT_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError, RecursionError) as exc:  # Recursion: nested too deeply
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise FormatError(f"'{path}' is not a readable conversion record ({reason}). Fix: "
                          "convert again into that folder") from None
    if not isinstance(record, dict):
        raise FormatError(f"'{path}' is not a readable conversion record (not a JSON object). "
                          "Fix: convert again into that folder")
    return record


def input_shape(net: Any, name: str) -> tuple[int, ...]:
    """The declared shape of input blob `name` (CaffeNet.blob_shapes, or a generated Net's
    input_shapes)."""
    shapes = getattr(net, "blob_shapes", None) or getattr(net, "input_shapes", {})
    if name not in shapes:
        raise ConfigError(f"the shape of input '{name}' is unknown. Fix: give the input data")
    return tuple(int(d) for d in shapes[name])


def example_inputs(net: Any, inputs: Mapping[str, np.ndarray] | None = None,
                   batch: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for tracing and checking: the given arrays, else seeded standard normal data of
    each input's declared shape (with the batch axis set to `batch` when given)."""
    rs = np.random.RandomState(seed)
    out: dict[str, np.ndarray] = {}
    for name in net.input_names:
        if inputs is not None and name in inputs:
            arr = np.ascontiguousarray(inputs[name], dtype=np.float32)
            if batch is not None and arr.shape[0] != batch:
                reps = -(-batch // arr.shape[0])
                arr = np.ascontiguousarray(np.concatenate([arr] * reps)[:batch])
        else:
            shape = list(input_shape(net, name))
            if batch is not None and shape:
                shape[0] = batch
            arr = rs.standard_normal(shape).astype(np.float32)
        out[name] = arr
    if inputs is not None:
        extra = sorted(set(inputs) - set(net.input_names))
        if extra:
            raise ConfigError(f"input(s) {', '.join(extra)} are not inputs of the net; inputs "
                              f"are {', '.join(net.input_names)}")
    return out


def other_batch(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same inputs at a different batch size (batch + 1, new rows from a fixed seed), to
    check that only the batch axis is dynamic."""
    # The extra row is the first row reversed along axis 1 when there is one: new data, yet
    # still valid for inputs with a restricted range (Embed indices, labels).
    out = {}
    for name, arr in inputs.items():
        extra = arr[:1, ::-1] if arr.ndim > 1 else arr[:1]
        out[name] = np.ascontiguousarray(np.concatenate([arr, extra]))
    return out


def other_data(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same shapes with other data (each input reversed along its last axis): a trace that
    baked data-dependent decisions (NMS, ArgMax-driven control flow) into constants gives
    different results here than the live module. Values stay the same multiset, so inputs
    with a restricted range (Embed indices) stay valid."""
    return {k: np.flip(v, axis=-1).copy() if v.ndim else v
            for k, v in inputs.items()}


def reference_outputs(view: BlobOutputs, inputs: Mapping[str, np.ndarray]
                      ) -> dict[str, np.ndarray]:
    """The live module's outputs (float32 numpy) on `inputs`."""
    args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in view.input_names]
    with torch.no_grad():
        outs = view(*args)
    return {name: t.detach().cpu().float().numpy() for name, t in zip(view.output_names, outs)}


def compare_outputs(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], what: str,
                    rel: float = DEFAULT_REL) -> dict[str, float]:
    """max|diff| per output; ParityError naming the first output (in net order) that differs
    by more than rel * max(1, max|ref|), or has another shape."""
    diffs: dict[str, float] = {}
    for name, r in ref.items():
        g = np.asarray(got[name])
        r = np.asarray(r)
        if g.shape != r.shape:
            raise ParityError(f"{what}: output '{name}' has shape {g.shape}, the PyTorch module "
                              f"gives {r.shape}; the file was not written")
        if r.size == 0:
            diffs[name] = 0.0
            continue
        d = np.atleast_1d(np.abs(g.astype(np.float64) - r.astype(np.float64)))
        g, r = np.atleast_1d(g), np.atleast_1d(r)
        d[np.isnan(g) & np.isnan(r)] = 0.0
        allowed = Tolerance(rel).allowed(r)
        worst = float(np.nanmax(d)) if not np.isnan(d).all() else float("nan")
        if np.isnan(d).any() or not worst <= allowed:
            idx = np.unravel_index(int(np.nanargmax(np.where(np.isnan(d), np.inf, d))), d.shape)
            raise ParityError(
                f"{what}: first divergent output '{name}': max|diff| {worst:.3g} at {idx} "
                f"(exported {g[idx]!r}, PyTorch {r[idx]!r}) > allowed {allowed:.3g}; "
                "the file was not written. Fix: report this net (the exported graph computes "
                "something else than the converted module)")
        diffs[name] = worst
    return diffs


@contextlib.contextmanager
def staged_files(paths: Sequence[str]) -> Iterator[list[str]]:
    """One temporary file beside each of `paths` for the block to fill, created up front (an
    unwritable destination fails before any work is done). When the block succeeds every file
    is renamed into place; when anything fails, none is: a multi-file export is all or
    nothing."""
    from modelport.atomic import atomic_path

    seen: dict[str, str] = {}
    for p in paths:
        key = os.path.realpath(p)
        if key in seen:
            raise ConfigError(f"'{seen[key]}' and '{p}' are the same file. Fix: give each "
                              "export its own output path")
        seen[key] = p
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(p)) for p in paths]


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """Silence torch/onnx exporter chatter (progress lines, deprecation and tracer warnings);
    real failures still raise."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                              "torch._export", "onnxscript", "torch.fx")]
    levels = [lg.level for lg in loggers]
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def first_line(exc: BaseException) -> str:
    """The informative line of an exporter's exception (torch.export's own summary line when
    there is one)."""
    import re

    text = str(exc)
    summary = re.search(r"## Exception summary\s*\n\s*(?:<class '[^']+'>: )?(.+)", text)
    if summary:
        return summary.group(1).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("Failed to export the model with torch.export"):
            return line
    return type(exc).__name__
