"""Caffe SSD's DetectionOutput in standard ONNX operators (NonMaxSuppression, TopK, ...).

The live module (modelport.layers.ssd.CaffeDetectionOutput) runs Python loops whose shape
depends on the data, which no tracer can capture. For ONNX export, each such module is swapped
for a twin that calls one opaque custom op, `modelport::caffe_detection_output` (its eager
implementation is the live module, so tracing runs the real thing); the exporter then lowers
that op to a graph of default-domain ONNX operators built by `build_graph`, once for each
exporter (torch.export's: an onnxscript translation; the TorchScript one: a symbolic).

How Caffe's ApplyNMSFast maps onto ONNX NonMaxSuppression (NMS), per image i and
non-background class c (the NMS "batch" axis is i * classes + c, one NMS class each):

- top_k: TopK over the class's P scores with k = min(top_k, P) (all P when top_k is -1) is
  Caffe's "the top_k best of the scores > confidence_threshold", ties in prior order (ONNX
  TopK and Caffe's stable_sort both keep the lower index first).
- NMS scores are the candidates' ranks (k, k-1, ..., 1), 0 for a score not strictly above
  confidence_threshold, with NMS score_threshold 0.5: so NMS visits the candidates in exactly
  Caffe's order and keeps exactly Caffe's candidates, whatever its tie-breaking or its strict
  or non-strict score comparison.
- overlap: NMS suppresses a box whose IoU with a kept box is > iou_threshold, the IoU being
  inter / (area1 + area2 - inter) in float without Caffe's unnormalised +1 (the same
  expression as Caffe's normalised JaccardOverlap); IoU is symmetric in x and y, so the
  [xmin, ymin, xmax, ymax] boxes go in as they are (center_point_box 0). A box with
  xmax < xmin or ymax < ymin overlaps nothing in Caffe, while NMS would reorder its corners:
  it is replaced by an empty box for the NMS (the output keeps the decoded box).
  nms_threshold above 1 suppresses nothing either way, so it is clamped to 1 (NMS's range).
- eta < 1 (adaptive NMS: the threshold shrinks after each kept box) has no ONNX equivalent
  and is refused.

Then keep_top_k per image: the selected detections are ranked within their image by
descending score (ties: label, then NMS order), and those ranked below keep_top_k stay.
Rows come out ordered by image, label, descending score (ties: prior order), as the live
module lists them; no detection in the whole batch gives one row [i, -1, ..., -1] per image.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from modelport.export.common import ExportError

# NonMaxSuppression is opset 10; TopK's `largest`, CumSum, Range, GatherElements are 11.
MIN_OPSET = 11
OP_NAME = "modelport::caffe_detection_output"
# The symbolic name of the row axis of a DetectionOutput top in the exported graph.
ROW_DIM = "num_detections"

_CORNER, _CENTER_SIZE, _CORNER_SIZE = 1, 2, 3


@dataclass(frozen=True)
class DetectionParams:
    """A DetectionOutput's settings as the ONNX graph needs them (eta is 1)."""

    num_classes: int
    share_location: bool
    background_label_id: int
    code_type: int
    variance_encoded_in_target: bool
    keep_top_k: int
    confidence_threshold: float
    nms_threshold: float
    top_k: int
    num_priors: int


# ---- the custom op ---------------------------------------------------------------------------


@torch.library.custom_op(OP_NAME, mutates_args=())
def caffe_detection_output(loc: torch.Tensor, conf: torch.Tensor, prior: torch.Tensor,
                           num_classes: int, share_location: bool, background_label_id: int,
                           code_type: int, variance_encoded_in_target: bool, keep_top_k: int,
                           confidence_threshold: float, nms_threshold: float, top_k: int,
                           num_priors: int) -> torch.Tensor:
    """The live CaffeDetectionOutput (eta 1) as one opaque op (num_priors is informative)."""
    from modelport.layers.ssd import CaffeDetectionOutput

    module = CaffeDetectionOutput(num_classes, share_location, background_label_id, code_type,
                                  variance_encoded_in_target, keep_top_k, confidence_threshold,
                                  nms_threshold, 1.0, top_k)
    return module(loc, conf, prior).clone()


@caffe_detection_output.register_fake
def _fake(loc: torch.Tensor, conf: torch.Tensor, prior: torch.Tensor, *args: Any) -> torch.Tensor:
    rows = torch.library.get_ctx().new_dynamic_size()
    return loc.new_empty((1, 1, rows, 7))


class ExportDetectionOutput(nn.Module):
    """Export-time twin of a CaffeDetectionOutput: the same top, as one custom op call."""

    def __init__(self, params: DetectionParams) -> None:
        super().__init__()
        self.params = params

    def forward(self, loc: torch.Tensor, conf: torch.Tensor,
                prior: torch.Tensor) -> torch.Tensor:
        p = self.params
        return torch.ops.modelport.caffe_detection_output(
            loc.float(), conf.float(), prior.float(), p.num_classes, p.share_location,
            p.background_label_id, p.code_type, p.variance_encoded_in_target, p.keep_top_k,
            p.confidence_threshold, p.nms_threshold, p.top_k, p.num_priors)


# ---- finding and swapping the modules --------------------------------------------------------


def _is_detection_output(module: nn.Module) -> bool:
    # By name: a generated model.py holds a standalone copy of the class.
    return type(module).__name__ == "CaffeDetectionOutput" and hasattr(module, "eta")


def _params(module: nn.Module, num_priors: int) -> DetectionParams:
    m: Any = module
    return DetectionParams(int(m.num_classes), bool(m.share_location),
                           int(m.background_label_id), int(m.code_type),
                           bool(m.variance_encoded_in_target), int(m.keep_top_k),
                           float(m.confidence_threshold), float(m.nms_threshold), int(m.top_k),
                           num_priors)


def detection_modules(view: Any) -> list[tuple[str, nn.Module]]:
    """(description, module) of every DetectionOutput the export runs: those in the view's
    run plan, or every such module of a generated net."""
    if view.run_plan is not None:
        modules = view.net._modules
        return [(f"layer '{layer.name}' (type {layer.type})", modules[key])
                for layer, key in view.run_plan if _is_detection_output(modules[key])]
    return [(f"module '{name}' (type DetectionOutput)", module)
            for name, module in view.net.named_modules() if _is_detection_output(module)]


@dataclass
class ExportPlan:
    """The DetectionOutput modules of one export, their settings, and the view outputs they
    produce (whose row axis is data dependent)."""

    params: dict[int, DetectionParams]  # by id() of the live module
    tops: list[str]


def plan_export(view: Any, example: Sequence[torch.Tensor], opset: int) -> ExportPlan:
    """Check that every DetectionOutput the export runs has an ONNX form (ExportError naming
    the layer otherwise) and find, in one eager run on `example`, its prior count (from the
    prior bottom's shape) and which of the view's outputs it produces."""
    found = detection_modules(view)
    for what, module in found:
        eta = float(module.eta)  # type: ignore[arg-type]
        if eta < 1:
            raise ExportError(f"{what}: adaptive NMS (nms_param.eta {eta:g} < 1) has no "
                              "standard ONNX equivalent (NonMaxSuppression's threshold is "
                              "fixed). Fix: set eta to 1, or export the net up to the "
                              "DetectionOutput's bottoms (--outputs) and run NMS yourself")
        if opset < MIN_OPSET:
            raise ExportError(f"{what}: DetectionOutput needs ONNX opset {MIN_OPSET} or newer "
                              f"(NonMaxSuppression, TopK), opset {opset} was asked. Fix: use "
                              f"--opset {MIN_OPSET} or newer")
    if not found:
        return ExportPlan({}, [])
    params: dict[int, DetectionParams] = {}
    made: list[torch.Tensor] = []  # held, so that no id() is reused

    def pre_hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        params[id(module)] = _params(module, int(args[2].shape[-1]) // 4)

    def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
        made.append(out)

    handles = []
    for _, module in found:
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            outputs = view(*example)
    finally:
        for h in handles:
            h.remove()
    tops = [name for name, out in zip(view.output_names, outputs)
            if any(out is t for t in made)]
    return ExportPlan(params, tops)


@contextlib.contextmanager
def export_twins(view: Any, plan: ExportPlan) -> Iterator[None]:
    """Swap each planned DetectionOutput module of the view's net for its
    ExportDetectionOutput twin while exporting."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        if plan.params:
            for parent in list(view.net.modules()):
                for name, child in list(parent._modules.items()):
                    if child is not None and id(child) in plan.params:
                        parent._modules[name] = ExportDetectionOutput(plan.params[id(child)])
                        swapped.append((parent, name, child))
        yield
    finally:
        for parent, name, child in swapped:
            parent._modules[name] = child


# ---- the ONNX graph --------------------------------------------------------------------------


class GraphOps:
    """What build_graph needs from an exporter: emit a default-domain op, a constant."""

    opset: int

    def op(self, name: str, *inputs: Any, outputs: int = 1, **attrs: Any) -> Any:
        raise NotImplementedError

    def const(self, value: np.ndarray) -> Any:
        raise NotImplementedError

    def reduce_sum(self, x: Any, axis: int) -> Any:
        """ReduceSum over one axis, keepdims 0 (axes became an input in opset 13)."""
        if self.opset >= 13:
            return self.op("ReduceSum", x, self.const(np.array([axis], np.int64)), keepdims=0)
        return self.op("ReduceSum", x, axes=[axis], keepdims=0)


def _i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def build_graph(g: GraphOps, loc: Any, conf: Any, prior: Any, p: DetectionParams) -> Any:
    """The DetectionOutput top (1 x 1 x rows x 7, float) from loc, conf and prior values."""
    num_p, num_c = p.num_priors, p.num_classes
    classes = [c for c in range(num_c) if c != p.background_label_id]
    cp = len(classes)
    k = num_p if p.top_k < 0 else min(p.top_k, num_p)

    def sl(x: Any, start: int, axis: int) -> Any:
        return g.op("Slice", x, g.const(_i64(start)), g.const(_i64(start + 1)),
                    g.const(_i64(axis)))

    def scalar(x: Any) -> Any:
        return g.op("Reshape", x, g.const(_i64()))

    def column(x: Any) -> Any:
        return g.op("Reshape", x, g.const(_i64(-1, 1)))

    def arange(n_scalar: Any) -> Any:
        return g.op("Range", g.const(np.array(0, np.int64)), n_scalar,
                    g.const(np.array(1, np.int64)))

    num = sl(g.op("Shape", conf), 0, 0)  # [N]
    if cp and k:
        rows = _detections(g, loc, conf, prior, p, classes, k, sl, column, arange)
    else:  # no class or top_k 0: nothing to detect; still read loc and prior (an exporter
        # drops a graph input nothing reads)
        nothing = [g.op("Slice", g.op("Reshape", x, g.const(_i64(-1))), g.const(_i64(0)),
                        g.const(_i64(0)), g.const(_i64(0))) for x in (loc, prior)]
        rows = g.op("Reshape", g.op("Concat", *nothing, axis=0), g.const(_i64(-1, 7)))
    # No detection in the whole batch: one row [i, -1, ..., -1] per image.
    count = sl(g.op("Shape", rows), 0, 0)
    empty = g.op("Cast", g.op("Equal", count, g.const(_i64(0))), to=7)  # INT64
    ids = g.op("Cast", column(arange(scalar(num))), to=1)  # FLOAT
    minus = g.op("Expand", g.const(np.full((1, 6), -1, np.float32)),
                 g.op("Concat", num, g.const(_i64(6)), axis=0))
    fallback = g.op("Concat", ids, minus, axis=1)
    fallback = g.op("Slice", fallback, g.const(_i64(0)), g.op("Mul", num, empty),
                    g.const(_i64(0)))
    out = g.op("Concat", rows, fallback, axis=0)
    return g.op("Reshape", out, g.const(_i64(1, 1, -1, 7)))


def _decode(g: GraphOps, priors: Any, variances: Any, loc: Any, p: DetectionParams,
            sl: Callable[[Any, int, int], Any]) -> Any:
    """bbox_util.cpp DecodeBBox, in the live module's float32 operation order: priors and
    variances P x 4, loc N x L x P x 4."""
    px0, py0, px1, py1 = (sl(priors, i, 1) for i in range(4))  # P x 1
    lx0, ly0, lx1, ly1 = (sl(loc, i, 3) for i in range(4))  # N x L x P x 1
    vs = [sl(variances, i, 1) for i in range(4)]

    def v(i: int, x: Any) -> Any:
        return x if p.variance_encoded_in_target else g.op("Mul", vs[i], x)

    add, sub, mul = (lambda a, b: g.op("Add", a, b)), (lambda a, b: g.op("Sub", a, b)), \
        (lambda a, b: g.op("Mul", a, b))
    two = g.const(np.array(2, np.float32))
    if p.code_type == _CORNER:
        out = (add(px0, v(0, lx0)), add(py0, v(1, ly0)), add(px1, v(2, lx1)),
               add(py1, v(3, ly1)))
    elif p.code_type == _CENTER_SIZE:
        pw, ph = sub(px1, px0), sub(py1, py0)
        pcx, pcy = g.op("Div", add(px0, px1), two), g.op("Div", add(py0, py1), two)
        cx, cy = add(mul(v(0, lx0), pw), pcx), add(mul(v(1, ly0), ph), pcy)
        w, h = mul(g.op("Exp", v(2, lx1)), pw), mul(g.op("Exp", v(3, ly1)), ph)
        hw, hh = g.op("Div", w, two), g.op("Div", h, two)
        out = (sub(cx, hw), sub(cy, hh), add(cx, hw), add(cy, hh))
    elif p.code_type == _CORNER_SIZE:
        pw, ph = sub(px1, px0), sub(py1, py0)
        out = (add(px0, mul(v(0, lx0), pw)), add(py0, mul(v(1, ly0), ph)),
               add(px1, mul(v(2, lx1), pw)), add(py1, mul(v(3, ly1), ph)))
    else:
        raise ExportError(f"DetectionOutput: unknown code_type {p.code_type}")
    return g.op("Concat", *out, axis=3)


def _detections(g: GraphOps, loc: Any, conf: Any, prior: Any, p: DetectionParams,
                classes: list[int], k: int, sl: Callable[[Any, int, int], Any],
                column: Callable[[Any], Any], arange: Callable[[Any], Any]) -> Any:
    """The kept detections as rows x 7, in the live module's order."""
    num_p, num_c, cp = p.num_priors, p.num_classes, len(classes)
    num_l = 1 if p.share_location else num_c
    cls = g.const(np.array(classes, np.int64))
    some = cp < num_c  # a background class to drop
    loc4 = g.op("Transpose", g.op("Reshape", loc, g.const(_i64(-1, num_p, num_l, 4))),
                perm=[0, 2, 1, 3])  # N x L x P x 4
    # Caffe reads the priors and variances from the start of the prior blob (item 0).
    pr = g.op("Slice", g.op("Reshape", prior, g.const(_i64(-1))), g.const(_i64(0)),
              g.const(_i64(2 * num_p * 4)), g.const(_i64(0)))
    pr = g.op("Reshape", pr, g.const(_i64(2, num_p, 4)))
    zero, one = g.const(np.array(0, np.int64)), g.const(np.array(1, np.int64))
    decoded = _decode(g, g.op("Gather", pr, zero, axis=0), g.op("Gather", pr, one, axis=0),
                      loc4, p, sl)
    scores = g.op("Transpose", g.op("Reshape", conf, g.const(_i64(-1, num_p, num_c))),
                  perm=[0, 2, 1])  # N x C x P
    if some:
        scores = g.op("Gather", scores, cls, axis=1)  # N x C' x P
    # Caffe's pre-NMS top_k (stable: ties keep the lower prior first).
    top, idx = g.op("TopK", scores, g.const(_i64(k)), axis=-1, largest=1, sorted=1, outputs=2)
    four = g.const(_i64(1, 1, 4) if p.share_location else _i64(1, 1, 1, 4))
    if p.share_location:
        src = g.op("Reshape", decoded, g.const(_i64(-1, num_p, 4)))
        where = g.op("Expand", g.op("Reshape", idx, g.const(_i64(-1, cp * k, 1))), four)
        boxes = g.op("GatherElements", src, where, axis=1)
    else:
        src = g.op("Gather", decoded, cls, axis=1) if some else decoded
        where = g.op("Expand", g.op("Reshape", idx, g.const(_i64(-1, cp, k, 1))), four)
        boxes = g.op("GatherElements", src, where, axis=2)
    boxes = g.op("Reshape", boxes, g.const(_i64(-1, k, 4)))  # (N*C') x k x 4
    # Boxes with xmax < xmin or ymax < ymin overlap nothing in Caffe: empty boxes for NMS.
    x0, y0, x1, y1 = (sl(boxes, i, 2) for i in range(4))
    bad = g.op("Or", g.op("Less", x1, x0), g.op("Less", y1, y0))
    nms_boxes = g.op("Where", bad, g.op("Concat", x0, y0, x0, y0, axis=2), boxes)
    ranks = g.const(np.arange(k, 0, -1).astype(np.float32))
    above = g.op("Greater", top, g.const(np.array(p.confidence_threshold, np.float32)))
    nms_scores = g.op("Where", above, ranks, g.const(np.array(0, np.float32)))
    nms_scores = g.op("Reshape", nms_scores, g.const(_i64(-1, 1, k)))
    selected = g.op("NonMaxSuppression", nms_boxes, nms_scores, g.const(_i64(k)),
                    g.const(np.array([min(p.nms_threshold, 1.0)], np.float32)),
                    g.const(np.array([0.5], np.float32)))  # M x 3: (N*C' batch, 0, rank)
    # One key per kept box, b * k + rank: sorted, it is the image, label, rank order.
    key = g.op("Add", g.op("Mul", g.op("Gather", selected, zero, axis=1), g.const(_i64(k))),
               g.op("Gather", selected, g.const(np.array(2, np.int64)), axis=1))
    count = g.op("Shape", key)
    key = g.op("TopK", key, count, axis=0, largest=0, sorted=1, outputs=2)[0]
    if p.keep_top_k > -1:
        key = _keep_top_k(g, key, top, cp * k, p.keep_top_k, sl, arange)
    batch = g.op("Div", key, g.const(_i64(k)))
    image = g.op("Div", batch, g.const(_i64(cp)))
    label = g.op("Gather", cls, g.op("Sub", batch, g.op("Mul", image, g.const(_i64(cp)))))
    score = g.op("Gather", g.op("Reshape", top, g.const(_i64(-1))), key)
    box = g.op("Gather", g.op("Reshape", boxes, g.const(_i64(-1, 4))), key, axis=0)
    return g.op("Concat", g.op("Cast", column(image), to=1), g.op("Cast", column(label), to=1),
                column(score), box, axis=1)


def _keep_top_k(g: GraphOps, key: Any, top: Any, per_image: int, keep_top_k: int,
                sl: Callable[[Any, int, int], Any], arange: Callable[[Any], Any]) -> Any:
    """The sorted keys of the detections ranked below keep_top_k in their image by
    descending score (ties: the lower key first, i.e. label then NMS order)."""
    count = g.op("Shape", key)
    m = g.op("Reshape", count, g.const(_i64()))
    score = g.op("Gather", g.op("Reshape", top, g.const(_i64(-1))), key)
    image = g.op("Div", key, g.const(_i64(per_image)))
    # Positions in descending score order (TopK is stable: keys are ascending).
    by_score = g.op("TopK", score, count, axis=0, largest=1, sorted=1, outputs=2)[1]
    # Then stably by image: unique int keys image * M + position in score order.
    composite = g.op("Add", g.op("Mul", g.op("Gather", image, by_score), m), arange(m))
    composite = g.op("TopK", composite, count, axis=0, largest=0, sorted=1, outputs=2)[0]
    # (ONNX Runtime refuses an integer division by 0 even over an empty tensor.)
    m_div = g.op("Add", m, g.op("Cast", g.op("Equal", m, g.const(np.array(0, np.int64))), to=7))
    order = g.op("Gather", by_score, g.op("Mod", composite, m_div))
    image_sorted = g.op("Div", composite, m_div)
    # Rank within the image = position - the image's first position.
    num_images = g.op("Add", g.op("ReduceMax", g.op("Concat", image, g.const(_i64(-1)),
                                                    axis=0), keepdims=0),
                      g.const(np.array(1, np.int64)))
    onehot = g.op("Equal", g.op("Reshape", image, g.const(_i64(-1, 1))),
                  g.op("Reshape", arange(num_images), g.const(_i64(1, -1))))
    counts = g.reduce_sum(g.op("Cast", onehot, to=7), 0)
    starts = g.op("Sub", g.op("CumSum", counts, g.const(np.array(0, np.int64))), counts)
    rank = g.op("Sub", arange(m), g.op("Gather", starts, image_sorted))
    kept = g.op("Reshape", g.op("NonZero", g.op("Less", rank, g.const(_i64(keep_top_k)))),
                g.const(_i64(-1)))
    positions = g.op("Gather", order, kept)
    kept_keys = g.op("Gather", key, positions)
    return g.op("TopK", kept_keys, g.op("Shape", kept_keys), axis=0, largest=0, sorted=1,
                outputs=2)[0]


# ---- the two exporters -----------------------------------------------------------------------


class _ScriptOps(GraphOps):
    """onnxscript ops (torch.export-based exporter's translation functions)."""

    def __init__(self) -> None:
        from modelport.optional import require

        self.opset = 18
        self._ops = require("onnxscript", "export", "ONNX export of DetectionOutput at opset "
                            ">= 18").opset18

    def op(self, name: str, *inputs: Any, outputs: int = 1, **attrs: Any) -> Any:
        if "value" in attrs and isinstance(attrs["value"], np.ndarray):
            from onnx import numpy_helper

            attrs["value"] = numpy_helper.from_array(attrs["value"])
        return getattr(self._ops, name)(*inputs, **attrs)

    def const(self, value: np.ndarray) -> Any:
        from onnx import numpy_helper

        return self._ops.Constant(value=numpy_helper.from_array(np.asarray(value)))


class _TorchScriptOps(GraphOps):
    """torch._C.Graph ops (TorchScript-based exporter's symbolic functions)."""

    def __init__(self, graph: Any, opset: int) -> None:
        self.graph = graph
        self.opset = opset

    def op(self, name: str, *inputs: Any, outputs: int = 1, **attrs: Any) -> Any:
        typed: dict[str, Any] = {}
        for key, value in attrs.items():
            if isinstance(value, np.ndarray):
                typed[f"{key}_t"] = torch.from_numpy(np.array(value))
            elif isinstance(value, float):
                typed[f"{key}_f"] = value
            else:
                typed[f"{key}_i"] = value
        return self.graph.op(name, *inputs, outputs=outputs, **typed)

    def const(self, value: np.ndarray) -> Any:
        # np.array, not np.ascontiguousarray: that one turns a 0-d array into a 1-d one.
        return self.graph.op("Constant", value_t=torch.from_numpy(np.array(value)))


_PARAM_NAMES = ("num_classes", "share_location", "background_label_id", "code_type",
                "variance_encoded_in_target", "keep_top_k", "confidence_threshold",
                "nms_threshold", "top_k", "num_priors")


def _translate(loc: Any, conf: Any, prior: Any, num_classes: int, share_location: bool,
               background_label_id: int, code_type: int, variance_encoded_in_target: bool,
               keep_top_k: int, confidence_threshold: float, nms_threshold: float, top_k: int,
               num_priors: int) -> Any:
    params = DetectionParams(num_classes, share_location, background_label_id, code_type,
                             variance_encoded_in_target, keep_top_k, confidence_threshold,
                             nms_threshold, top_k, num_priors)
    return build_graph(_ScriptOps(), loc, conf, prior, params)


def translation_table() -> dict[Any, Callable[..., Any]]:
    """custom_translation_table entries for torch.onnx.export(dynamo=True)."""
    return {torch.ops.modelport.caffe_detection_output.default: _translate}


_SYMBOLIC_OPSETS: set[int] = set()


def register_symbolic(opset: int = MIN_OPSET) -> None:
    """Register the TorchScript-based exporter's symbolic for the custom op (for `opset` and
    newer; the graph is built for the opset being exported)."""
    if opset in _SYMBOLIC_OPSETS:
        return
    from torch.onnx import symbolic_helper

    def symbolic(graph: Any, loc: Any, conf: Any, prior: Any, *args: Any) -> Any:
        kinds: tuple[Any, ...] = ("i", "b", "i", "i", "b", "i", "f", "f", "i", "i")
        values = [symbolic_helper._maybe_get_const(a, kind) for a, kind in zip(args, kinds)]
        casts = (int, bool, int, int, bool, int, float, float, int, int)
        params = DetectionParams(**{name: cast(v) for name, cast, v
                                    in zip(_PARAM_NAMES, casts, values)})
        ops = _TorchScriptOps(graph, int(getattr(graph, "opset", opset)))
        return build_graph(ops, loc, conf, prior, params)

    torch.onnx.register_custom_op_symbolic(OP_NAME, symbolic, opset)
    _SYMBOLIC_OPSETS.add(opset)


def export_module(module: nn.Module, bottoms: Sequence[torch.Tensor]) -> nn.Module:
    """The module to export for one layer: a DetectionOutput's twin, else the module."""
    if _is_detection_output(module) and len(bottoms) == 3:
        return ExportDetectionOutput(_params(module, int(bottoms[2].shape[-1]) // 4))
    return module
