"""ONNX export of a converted net, in standard ONNX operators only, checked with ONNX Runtime.

Caffe semantics without a one-op ONNX twin are exported as compositions of standard ops, because
the modules are written that way: ceil-mode pooling pads explicitly (Pad) and pools without
implicit padding (MaxPool / AveragePool), AVE pooling divides by Caffe's per-window divisor (a
Div by a constant computed from static shapes), and so on. Nothing is emitted in a custom domain;
a graph that would need one is refused.

opset >= 18 uses torch's torch.export-based exporter (the one PyTorch maintains); older opsets
(e.g. 17, for older runtimes) use torch's TorchScript-based exporter. Either way the written file
has been run by ONNX Runtime on the same inputs as the PyTorch module and matched it (at a second
batch size too with `dynamic_batch`).

SSD's DetectionOutput (per-class NMS, data-dependent row count) is lowered to standard ops around
ONNX NonMaxSuppression (export/detection_onnx.py); its top's row axis is symbolic.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modelport.atomic import write_bytes
from modelport.export import detection_onnx
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
from modelport.optional import require

if TYPE_CHECKING:
    import onnx

    from modelport.backends.torch_module import CaffeNet

DEFAULT_OPSET = 18
# The TorchScript-based exporter handles these; the torch.export-based one starts at 18.
MIN_OPSET = 9
# ONNX's default operator domain, under both spellings.
DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})
_PROTOBUF_LIMIT = 2**31 - 1


def export_onnx(net: CaffeNet, path: str | os.PathLike[str] | None, *,
                inputs: Mapping[str, np.ndarray] | None = None, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = False, outputs: Sequence[str] | None = None,
                rel: float = DEFAULT_REL) -> tuple[onnx.ModelProto, ExportReport]:
    """Export `net` to an ONNX file at `path` (None: only build and check the model).

    The graph's inputs and outputs carry the Caffe blob names. `inputs` (by blob name) are used
    for tracing and for the ONNX Runtime check; by default seeded random data of the declared
    shapes. With `dynamic_batch` only the batch axis (axis 0) is symbolic.

    Raises:
        ExportError: the exporter failed (the message names the layer when one can be blamed),
            or the graph uses a non-standard operator domain.
        ParityError: ONNX Runtime's result differs from the module's (naming the first
            divergent output); nothing is written.
    """
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; use {MIN_OPSET} or newer "
                          f"(default {DEFAULT_OPSET})")
    require_onnx_packages(opset)
    view = BlobOutputs(net, outputs)
    feed = example_inputs(net, inputs)
    args = tuple(torch.from_numpy(feed[n]) for n in view.input_names)
    plan = detection_onnx.plan_export(view, args, opset)
    model = _build(view, feed, opset, dynamic_batch, plan)
    check_standard_domains(model)
    report = ExportReport(path=os.fspath(path) if path is not None else "<memory>",
                          format="ONNX", outputs=list(view.output_names), opset=opset,
                          ops=sorted({n.op_type for n in _all_nodes(model.graph)}))
    data = model.SerializeToString()
    session = _session(data)
    checks = [(feed, "the example inputs"), (other_data(feed), "other data of that shape")]
    if dynamic_batch:
        checks.append((other_batch(feed), "another batch size"))
    for arrays, what in checks:
        ref = reference_outputs(view, arrays)
        got = dict(zip(view.output_names, session.run(view.output_names, arrays)))
        size = int(next(iter(arrays.values())).shape[0]) if arrays else 0
        diffs = compare_outputs(ref, got, f"ONNX Runtime on {what} (batch {size})", rel)
        for name, d in diffs.items():
            report.max_diff[name] = max(report.max_diff.get(name, 0.0), d)
        if size not in report.checked_batches:
            report.checked_batches.append(size)
    if path is not None:
        write_bytes(path, data)
    return model, report


def require_onnx_packages(opset: int) -> None:
    """The export extra's packages this export needs, checked before anything is traced: onnx,
    onnxruntime (the check), and onnxscript for torch's torch.export-based exporter
    (opset >= 18), which torch imports only once it is exporting."""
    require("onnx", "export", "ONNX export")
    require("onnxruntime", "export", "checking the ONNX export with ONNX Runtime")
    if opset >= 18:
        require("onnxscript", "export", f"ONNX export at opset {opset} (torch's "
                "torch.export-based exporter)")


def _build(view: BlobOutputs, feed: Mapping[str, np.ndarray], opset: int,
           dynamic_batch: bool, plan: detection_onnx.ExportPlan) -> onnx.ModelProto:
    """Export the view, DetectionOutput modules as `plan` says (the row axis of their tops
    is declared symbolic)."""
    require("onnx", "export", "ONNX export")
    import onnx

    args = tuple(torch.from_numpy(feed[n]) for n in view.input_names)
    names = list(view.input_names)
    try:
        with quiet_exporters(), torch.no_grad(), detection_onnx.export_twins(view, plan):
            if opset >= 18:
                dynamic: Any = None
                if dynamic_batch:
                    batch = torch.export.Dim("batch")
                    dynamic = (tuple({0: batch} for _ in names),)
                # Graph inputs/outputs are renamed to the Caffe blob names afterwards: torch's
                # own renaming can collide with internal value names (an invalid graph).
                # optimize=False: onnxscript's optimizer (0.7) drops `Add(x, 1e-10)` as if it
                # were x + 0, which turns Normalize's sqrt(sum x^2 + eps) into a 0/0 NaN;
                # ONNX Runtime folds constants itself when it loads the graph.
                program = torch.onnx.export(
                    view, args, dynamo=True, opset_version=opset, dynamic_shapes=dynamic,
                    optimize=False, verbose=False, report=False,
                    custom_translation_table=detection_onnx.translation_table())
                assert program is not None
                model = program.model_proto
                name_graph_io(model, names, list(view.output_names))
            else:
                import io

                detection_onnx.register_symbolic()
                buf = io.BytesIO()
                axes: dict[str, dict[int, str]] = (
                    {n: {0: "batch"} for n in names + list(view.output_names)}
                    if dynamic_batch else {})
                for top in plan.tops:
                    axes[top] = {2: detection_onnx.ROW_DIM}
                torch.onnx.export(view, args, buf,  # type: ignore[arg-type]  # file objects work
                                  dynamo=False, opset_version=opset,
                                  input_names=names, output_names=list(view.output_names),
                                  dynamic_axes=axes or None, do_constant_folding=True)
                model = onnx.load_from_string(buf.getvalue())
    except ExportError:
        raise
    except Exception as exc:  # exporters fail with many exception types
        blame = blame_layer(view.net, feed)
        where = f"{blame}: " if blame else ""
        raise ExportError(f"{where}ONNX export failed ({first_line(exc)}). Fix: report the "
                          "layer type; meanwhile try another --opset or export TorchScript",
                          ) from None
    _declare_detection_rows(model, plan.tops)
    if model.ByteSize() > _PROTOBUF_LIMIT:
        raise ExportError("the ONNX model is larger than protobuf's 2 GB limit; "
                          "Fix: export a smaller net (external-data ONNX is not supported yet)")
    return model


def _declare_detection_rows(model: onnx.ModelProto, tops: Sequence[str]) -> None:
    """Declare each DetectionOutput top 1 x 1 x num_detections x 7 (rows depend on the data)."""
    for output in model.graph.output:
        if output.name in tops:
            dims = output.type.tensor_type.shape.dim
            del dims[:]
            for value in (1, 1, detection_onnx.ROW_DIM, 7):
                dim = dims.add()
                if isinstance(value, str):
                    dim.dim_param = value
                else:
                    dim.dim_value = value


def name_graph_io(model: onnx.ModelProto, inputs: Sequence[str],
                  outputs: Sequence[str]) -> None:
    """Give the graph's inputs and outputs these names (Caffe's blob names), renaming any
    internal value that already uses one, and giving each output its own value (Identity)
    when one tensor is returned under several names."""
    from onnx import helper

    graph = model.graph
    if len(graph.input) != len(inputs) or len(graph.output) != len(outputs):
        raise ExportError(f"the exported graph has {len(graph.input)} inputs and "
                          f"{len(graph.output)} outputs, expected {len(inputs)} and "
                          f"{len(outputs)}")
    used = {v for n in graph.node for v in (*n.input, *n.output)}
    used |= {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    used |= {t.name for t in graph.initializer}

    def rename(old: str, new: str) -> None:
        for n in graph.node:
            n.input[:] = [new if v == old else v for v in n.input]
            n.output[:] = [new if v == old else v for v in n.output]
        for v in (*graph.input, *graph.output, *graph.value_info):
            if v.name == old:
                v.name = new
        for t in graph.initializer:
            if t.name == old:
                t.name = new
        used.discard(old)
        used.add(new)

    wanted = list(inputs) + list(outputs)
    current = [v.name for v in graph.input] + [v.name for v in graph.output]
    # Move every internal value squatting on a wanted name out of the way first.
    for name in set(wanted):
        if name in used and name not in current:
            fresh = f"{name}__internal"
            while fresh in used:
                fresh += "_"
            rename(name, fresh)
    for v, name in zip(graph.input, inputs):
        if v.name != name:
            rename(v.name, name)
    seen: set[str] = set(inputs)
    for v, name in zip(graph.output, outputs):
        if v.name == name and name not in seen:
            seen.add(name)
            continue
        if v.name in seen or v.name in set(outputs) - {name}:
            # The same tensor under another name: an Identity gives it its own value.
            graph.node.append(helper.make_node("Identity", [v.name], [name],
                                               name=f"output_{name}"))
            used.add(name)
            v.name = name
        else:
            rename(v.name, name)
        seen.add(name)


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                nodes.extend(_all_nodes(attr.g))
            for sub in attr.graphs:
                nodes.extend(_all_nodes(sub))
    return nodes


def check_standard_domains(model: onnx.ModelProto) -> None:
    """Refuse a graph with any operator (or local function) outside the default ONNX domain."""
    for node in _all_nodes(model.graph):
        if node.domain not in DEFAULT_DOMAINS:
            raise ExportError(f"node '{node.name}' uses operator {node.domain}::{node.op_type} "
                              "outside the standard ONNX domain; the file was not written")
    if len(model.functions):
        names = ", ".join(f"{f.domain}::{f.name}" for f in model.functions)
        raise ExportError(f"the graph defines local functions ({names}); only standard ONNX "
                          "operators are allowed")
    for imp in model.opset_import:
        if imp.domain not in DEFAULT_DOMAINS:
            raise ExportError(f"the graph imports operator set '{imp.domain}'; only the "
                              "standard ONNX domain is allowed")


def _session(data: bytes) -> Any:
    ort = require("onnxruntime", "export", "checking the ONNX export with ONNX Runtime")

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for invalid graphs
        raise ExportError(f"ONNX Runtime cannot load the exported graph ({first_line(exc)}); "
                          "the file was not written") from None


def blame_layer(net: Any, feed: Mapping[str, np.ndarray]) -> str | None:
    """The first layer whose module alone cannot be captured by torch.export, as
    "layer 'x' (type T)", or None when each layer exports on its own (or `net` is not a
    CaffeNet, e.g. a generated model.py)."""
    from modelport.optional import available

    if not hasattr(net, "run_order") or not available("onnxscript"):
        return None  # (without onnxscript every layer would fail: no layer to blame)
    args = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in net.input_names]
    try:
        with torch.no_grad():
            blobs = net.forward_blobs(*args)
    except Exception:  # the eager net itself fails: nothing to blame on export
        return None

    class _One(torch.nn.Module):
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, *xs: torch.Tensor) -> Any:
            return self.module(*xs)

    for layer, key in net.run_order:
        bottoms = tuple(blobs[b] for b in layer.bottoms)
        module = detection_onnx.export_module(net._modules[key], bottoms)
        try:
            with quiet_exporters(), torch.no_grad():
                torch.onnx.export(_One(module), bottoms, dynamo=True,  # type: ignore[arg-type]
                                  verbose=False, report=False,
                                  custom_translation_table=detection_onnx.translation_table())
        except Exception:  # noqa: BLE001  (any failure blames this layer)
            return f"layer '{layer.name}' (type {layer.type})"
    return None
