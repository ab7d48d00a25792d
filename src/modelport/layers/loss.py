"""Loss and metric layers (training): SoftmaxWithLoss, EuclideanLoss, SigmoidCrossEntropyLoss,
HingeLoss, InfogainLoss, MultinomialLogisticLoss, ContrastiveLoss, Accuracy.

Every loss top is a 0-axis (scalar) blob as in Caffe (`LossLayer::Reshape`). The forward values
follow Caffe's float32 formulas; gradients come from autograd and equal Caffe's hand-written
Backward_cpu (the clamps Caffe ignores in backward are straight-through here, and
ContrastiveLoss, whose backward adds an epsilon its forward lacks, has an explicit backward).

`loss_weights(layer)` gives the weight of each top in the objective, as Caffe's
`Layer::SetLossWeights` does: an explicit `loss_weight` per top, else 1 for a loss layer's first
top and 0 for everything else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from modelport.caffe_math import FLT_MIN
from modelport.errors import ConfigError, LayerError
from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext, Shape
from modelport.layers.registry import register_layer
from modelport.schema import caffe_pb2

# Caffe types derived from LossLayer (their first top weighs 1 unless loss_weight says otherwise).
LOSS_LAYER_TYPES = frozenset({
    "SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss", "InfogainLoss",
    "MultinomialLogisticLoss", "ContrastiveLoss",
})

# include/caffe/layers/loss_layer.hpp: kLOG_THRESHOLD guards log() in the probability losses.
LOG_THRESHOLD = 1e-20

Normalization = caffe_pb2.LossParameter


def loss_weights(layer: Layer) -> tuple[float, ...]:
    """The loss weight of every top of `layer` (Caffe's Layer::SetLossWeights)."""
    given = list(layer.param.loss_weight)
    n = len(layer.tops)
    if given:
        if len(given) > n:
            raise LayerError(layer.name, layer.type,
                             f"has {len(given)} loss_weight values for {n} top blobs",
                             "give loss_weight once per top blob")
        return tuple(float(w) for w in given) + (0.0,) * (n - len(given))
    if layer.type in LOSS_LAYER_TYPES and n:
        return (1.0,) + (0.0,) * (n - 1)
    return (0.0,) * n


def normalization_mode(p: caffe_pb2.LossParameter, default: int) -> int:
    """Caffe's normalization choice: `normalization` if set, else legacy `normalize`
    (true -> VALID, false -> BATCH_SIZE), else the layer's own default."""
    if p.HasField("normalization"):
        return int(p.normalization)
    if p.HasField("normalize"):
        return int(Normalization.VALID if p.normalize else Normalization.BATCH_SIZE)
    return default


def normalizer(mode: int, outer: int, inner: int, valid: torch.Tensor | int | None) -> Any:
    """Caffe's LossLayer::GetNormalizer: FULL outer*inner, VALID the non-ignored count (all when
    there is no ignore_label), BATCH_SIZE outer, NONE 1; always at least 1."""
    if mode == Normalization.FULL:
        n: Any = outer * inner
    elif mode == Normalization.VALID:
        n = outer * inner if valid is None else valid
    elif mode == Normalization.BATCH_SIZE:
        n = outer
    elif mode == Normalization.NONE:
        n = 1
    else:
        raise ConfigError(f"unknown loss normalization mode {mode}")
    if isinstance(n, torch.Tensor):
        return torch.clamp(n.to(torch.float32), min=1.0)
    return float(max(1, n))


class _ClampMinStraight(torch.autograd.Function):
    """max(x, floor) in forward, identity in backward (Caffe's loss backward ignores its clamp)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, floor: float) -> torch.Tensor:  # noqa: D102
        return torch.clamp(x, min=floor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad, None


def clamp_min_straight(x: torch.Tensor, floor: float) -> torch.Tensor:
    """max(x, floor) whose gradient passes through unchanged, as Caffe's losses clamp before a
    log."""
    return _ClampMinStraight.apply(x, floor)  # type: ignore[no-any-return]


def _labels(label: torch.Tensor) -> torch.Tensor:
    """Caffe reads labels as `static_cast<int>(float)`: truncation toward zero."""
    return torch.trunc(label.detach()).to(torch.int64)


def _count(shape: Sequence[int], start: int, end: int | None = None) -> int:
    return math.prod(shape[start:end])


class LossModule(CaffeModule):
    """A Caffe loss or metric layer; its tops are scalars unless `output_shapes` says otherwise."""

    def __init__(self, name: str, type_: str) -> None:
        super().__init__()
        self.layer_name = name
        self.layer_type = type_

    def fail(self, what: str, fix: str | None = None) -> LayerError:
        return LayerError(self.layer_name, self.layer_type, what, fix)

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        return [()]

    def check_labels(self, lab: torch.Tensor, valid: torch.Tensor, n_classes: int) -> None:
        bad = valid & ((lab < 0) | (lab >= n_classes))
        if bool(bad.any()):
            value = int(lab[bad][0])
            raise self.fail(f"label {value} is outside 0..{n_classes - 1}",
                            "check the labels (or set loss_param.ignore_label)")

    def sample_labels(self, x: torch.Tensor, label: torch.Tensor,
                      ) -> tuple[int, torch.Tensor, torch.Tensor]:
        """N, the scores as N x (the rest) and one in-range label per sample, as HingeLoss and
        MultinomialLogisticLoss read them (label[i] indexes row i)."""
        num = x.shape[0]
        flat = x.reshape(num, -1)
        lab = _labels(label).reshape(-1)
        if lab.numel() != num:
            raise self.fail(f"the label blob has {lab.numel()} values for {num} samples")
        self.check_labels(lab, torch.ones_like(lab, dtype=torch.bool), flat.shape[1])
        return num, flat, lab


class SoftmaxLoss(LossModule):
    """What SoftmaxWithLoss and InfogainLoss share: a softmax over `axis`, labels per position
    outside it (skipping `ignore_label`), Caffe's normalisation `mode`, and the optional second
    top holding the probabilities."""

    def __init__(self, name: str, type_: str, axis: int, ignore_label: int | None, mode: int,
                 with_prob: bool) -> None:
        super().__init__(name, type_)
        self.axis = axis
        self.ignore_label = ignore_label
        self.mode = mode
        self.with_prob = with_prob

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        return [(), tuple(bottom_shapes[0])] if self.with_prob else [()]

    def valid_labels(self, label: torch.Tensor, outer: int, inner: int,
                     n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The labels as outer x inner and where they count (not ignore_label), checked."""
        lab = _labels(label).reshape(outer, inner)
        valid = torch.ones_like(lab, dtype=torch.bool)
        if self.ignore_label is not None:
            valid = lab != self.ignore_label
        self.check_labels(lab, valid, n_classes)
        return lab, valid

    def normalized(self, total: torch.Tensor, valid: torch.Tensor, outer: int, inner: int,
                   scores: torch.Tensor) -> Any:
        """The loss `total` divided by Caffe's normaliser, with the probabilities if asked."""
        count = valid.sum() if self.ignore_label is not None else None
        loss = total / normalizer(self.mode, outer, inner, count)
        if self.with_prob:
            return loss, torch.softmax(scores.detach(), dim=self.axis)
        return loss


class SoftmaxWithLoss(SoftmaxLoss):
    """Caffe SoftmaxWithLoss: -log softmax(scores)[label] over `axis`, normalised by `mode`,
    skipping `ignore_label`."""

    def __init__(self, name: str, axis: int, ignore_label: int | None, mode: int,
                 with_prob: bool) -> None:
        super().__init__(name, "SoftmaxWithLoss", axis, ignore_label, mode, with_prob)

    def forward(self, scores: torch.Tensor, label: torch.Tensor,
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        shape = tuple(scores.shape)
        outer, inner = _count(shape, 0, self.axis), _count(shape, self.axis + 1)
        n_classes = shape[self.axis]
        if label.numel() != outer * inner:
            raise self.fail(f"the label blob has {label.numel()} values, the scores "
                            f"{shape} need {outer * inner} (one per position outside axis "
                            f"{self.axis})", "check the label shape")
        x = scores.reshape(outer, n_classes, inner)
        lab, valid = self.valid_labels(label, outer, inner, n_classes)
        logp = torch.log_softmax(x, dim=1)
        picked = logp.gather(1, torch.where(valid, lab, 0).unsqueeze(1)).squeeze(1)
        picked = clamp_min_straight(picked, math.log(FLT_MIN))
        total = -(picked * valid).sum()
        return self.normalized(total, valid, outer, inner, scores)


@register_layer("SoftmaxWithLoss", role="train")
def convert_softmax_with_loss(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe SoftmaxWithLoss (layers/softmax_loss_layer.cpp): softmax over
    `softmax_param.axis`, then -log(max(p[label], FLT_MIN)) summed over every non-ignored
    position, divided by the normaliser (loss_param.normalization, default VALID; legacy
    `normalize: false` means BATCH_SIZE; at least 1). Optional second top: the probabilities."""
    ctx.expect_bottoms(2)
    p = layer.param
    axis = ctx.axis(p.softmax_param.axis)
    lp = p.loss_param
    ignore = int(lp.ignore_label) if lp.HasField("ignore_label") else None
    mode = normalization_mode(lp, Normalization.VALID)
    return SoftmaxWithLoss(layer.name, axis, ignore, mode, len(layer.tops) > 1)


class EuclideanLoss(LossModule):
    """Caffe EuclideanLoss: sum((a - b)^2) / (2 N)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.numel() != b.numel():
            raise self.fail(f"the two bottoms have {a.numel()} and {b.numel()} values",
                            "both bottoms must have the same count")
        diff = a - b.reshape(a.shape)
        return (diff * diff).sum() / a.shape[0] / 2


@register_layer("EuclideanLoss", role="train")
def convert_euclidean_loss(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe EuclideanLoss (layers/euclidean_loss_layer.cpp): sum((a - b)^2) / N / 2 with N the
    first axis of the bottoms; gradients flow to both bottoms."""
    ctx.expect_bottoms(2)
    return EuclideanLoss(layer.name, layer.type)


class SigmoidCrossEntropyLoss(LossModule):
    """Caffe SigmoidCrossEntropyLoss: the cross-entropy of sigmoid(x) against the target, skipping
    `ignore_label`, normalised by `mode`."""

    def __init__(self, name: str, ignore_label: int | None, mode: int) -> None:
        super().__init__(name, "SigmoidCrossEntropyLoss")
        self.ignore_label = ignore_label
        self.mode = mode

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if x.numel() != target.numel():
            raise self.fail(f"the scores have {x.numel()} values and the targets "
                            f"{target.numel()}", "both bottoms must have the same count")
        outer = x.shape[0]
        inner = x.numel() // max(1, outer)
        t = target.reshape(x.shape).detach()
        pos = (x >= 0).to(x.dtype)
        # Caffe's overflow-safe form: x*(t - [x>=0]) - log(1 + exp(x - 2*x*[x>=0])).
        per = -(x * (t - pos) - torch.log1p(torch.exp(x - 2 * x * pos)))
        count = None
        if self.ignore_label is not None:
            valid = torch.trunc(t).to(torch.int64) != self.ignore_label
            per = per * valid
            count = valid.sum()
        return per.sum() / normalizer(self.mode, outer, inner, count)


@register_layer("SigmoidCrossEntropyLoss", role="train")
def convert_sigmoid_cross_entropy_loss(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe SigmoidCrossEntropyLoss (layers/sigmoid_cross_entropy_loss_layer.cpp): logistic
    loss of sigmoid(x) against targets in [0, 1]; targets equal to ignore_label are skipped.
    With neither `normalization` nor `normalize` set it divides by BATCH_SIZE (not the proto
    default VALID)."""
    ctx.expect_bottoms(2)
    lp = layer.param.loss_param
    ignore = int(lp.ignore_label) if lp.HasField("ignore_label") else None
    mode = normalization_mode(lp, Normalization.BATCH_SIZE)
    return SigmoidCrossEntropyLoss(layer.name, ignore, mode)


class HingeLoss(LossModule):
    """Caffe HingeLoss: sum of max(0, 1 + sign * x) (sign -1 at the label, else +1), L1 or squared
    (L2), divided by N."""

    def __init__(self, name: str, norm: int) -> None:
        super().__init__(name, "HingeLoss")
        self.norm = norm

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        num, flat, lab = self.sample_labels(x, label)
        sign = torch.ones_like(flat)
        sign[torch.arange(num), lab] = -1.0
        margin = torch.relu(1 + sign * flat)
        if self.norm == caffe_pb2.HingeLossParameter.L1:
            return margin.sum() / num
        return (margin * margin).sum() / num


@register_layer("HingeLoss", role="train")
def convert_hinge_loss(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe HingeLoss (layers/hinge_loss_layer.cpp): one-vs-all hinge max(0, 1 - y*x) with y =
    +1 for the label's column and -1 elsewhere, summed (L1) or squared and summed (L2), / N."""
    ctx.expect_bottoms(2)
    return HingeLoss(layer.name, int(layer.param.hinge_loss_param.norm))


class InfogainLoss(SoftmaxLoss):
    """Caffe InfogainLoss: -sum_k H[label, k] log prob_k over `axis` (H from the loader, a third
    bottom or the identity), normalised by `mode`."""

    infogain: torch.Tensor | None
    def __init__(self, name: str, axis: int, infogain: torch.Tensor | None,
                 ignore_label: int | None, mode: int, with_prob: bool) -> None:
        super().__init__(name, "InfogainLoss", axis, ignore_label, mode, with_prob)
        self.register_buffer("infogain", infogain, persistent=False)

    def forward(self, scores: torch.Tensor, label: torch.Tensor,
                h: torch.Tensor | None = None) -> Any:
        shape = tuple(scores.shape)
        outer, inner = _count(shape, 0, self.axis), _count(shape, self.axis + 1)
        k = shape[self.axis]
        mat: torch.Tensor | None = h if h is not None else self.infogain
        assert mat is not None
        if mat.numel() != k * k:
            raise self.fail(f"the infogain matrix has {mat.numel()} values; {k} labels need "
                            f"{k}x{k}", "check infogain_loss_param.source (or the third bottom)")
        mat = mat.detach().reshape(k, k).to(scores.dtype)
        x = scores.reshape(outer, k, inner)
        lab, valid = self.valid_labels(label, outer, inner, k)
        logp = clamp_min_straight(torch.log_softmax(x, dim=1), math.log(FLT_MIN))
        rows = mat[torch.where(valid, lab, 0)]  # outer x inner x k
        per = -(rows.permute(0, 2, 1) * logp).sum(dim=1)
        total = (per * valid).sum()
        return self.normalized(total, valid, outer, inner, scores)


@register_layer("InfogainLoss", role="train")
def convert_infogain_loss(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe InfogainLoss (layers/infogain_loss_layer.cpp, Caffe 1.0): softmax over
    `infogain_loss_param.axis`, then -sum_l H[label, l] * log(max(p_l, FLT_MIN)) per position,
    normalised like SoftmaxWithLoss (default VALID). H (K x K) is given as a third bottom or
    comes from the binaryproto `infogain_loss_param.source`, which the loader read into the
    layer's LayerParameter.blobs."""
    ctx.expect_bottoms(2, 3)
    p = layer.param.infogain_loss_param
    axis = ctx.axis(p.axis)
    mat: torch.Tensor | None = None
    if len(layer.bottoms) < 3:
        if not p.source:
            raise ctx.error("has no infogain matrix",
                            "set infogain_loss_param.source or give H as a third bottom")
        if not layer.param.blobs:  # read by the loader (formats/caffe/layer_files.py)
            raise ctx.error(f"its infogain matrix file '{p.source}' is missing or not a "
                            "readable BlobProto",
                            "check infogain_loss_param.source (a .binaryproto; Caffe opens it "
                            "relative to the working directory)")
        stored = layer.param.blobs[0]
        mat = torch.from_numpy(np.array(stored.data, dtype=np.float32).reshape(
            tuple(int(d) for d in stored.shape.dim)))
    lp = layer.param.loss_param
    ignore = int(lp.ignore_label) if lp.HasField("ignore_label") else None
    mode = normalization_mode(lp, Normalization.VALID)
    return InfogainLoss(layer.name, axis, mat, ignore, mode, len(layer.tops) > 1)


class MultinomialLogisticLoss(LossModule):
    """Caffe MultinomialLogisticLoss: -sum log(max(prob[label], 1e-20)) / N."""

    def forward(self, prob: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        num, flat, lab = self.sample_labels(prob, label)
        picked = flat[torch.arange(num), lab]
        return -torch.log(clamp_min_straight(picked, LOG_THRESHOLD)).sum() / num


@register_layer("MultinomialLogisticLoss", role="train")
def convert_multinomial_logistic_loss(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe MultinomialLogisticLoss (layers/multinomial_logistic_loss_layer.cpp): the bottom
    holds probabilities; loss = -sum log(max(p[label], 1e-20)) / N."""
    ctx.expect_bottoms(2)
    return MultinomialLogisticLoss(layer.name, layer.type)


class _Contrastive(torch.autograd.Function):
    """Caffe's contrastive loss with its own backward (which adds 1e-4 to the distance)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, margin: float,
                legacy: bool) -> torch.Tensor:  # noqa: D102
        num = a.shape[0]
        diff = (a - b).reshape(num, -1)
        dist_sq = (diff * diff).sum(dim=1)
        similar = y.reshape(-1) != 0
        if legacy:
            dissimilar = torch.clamp(margin - dist_sq, min=0.0)
        else:
            dissimilar = torch.clamp(margin - torch.sqrt(dist_sq), min=0.0) ** 2
        loss = torch.where(similar, dist_sq, dissimilar).sum() / num / 2
        ctx.save_for_backward(diff, dist_sq, similar)
        ctx.margin, ctx.legacy, ctx.shape = margin, legacy, a.shape
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # noqa: D102
        diff, dist_sq, similar = ctx.saved_tensors
        num = diff.shape[0]
        alpha = grad / num
        if ctx.legacy:
            active = (ctx.margin - dist_sq) > 0
            coef = torch.where(active, -torch.ones_like(dist_sq), torch.zeros_like(dist_sq))
        else:
            dist = torch.sqrt(dist_sq)
            mdist = ctx.margin - dist
            coef = torch.where(mdist > 0, -mdist / (dist + 1e-4), torch.zeros_like(dist))
        coef = torch.where(similar, torch.ones_like(coef), coef)
        ga = (alpha * coef.unsqueeze(1) * diff).reshape(ctx.shape)
        return ga, -ga, None, None, None


class ContrastiveLoss(LossModule):
    """Caffe ContrastiveLoss: y d^2 + (1 - y) max(margin - d, 0)^2 (legacy: max(margin - d^2, 0)),
    summed and divided by 2 N."""

    def __init__(self, name: str, margin: float, legacy: bool) -> None:
        super().__init__(name, "ContrastiveLoss")
        self.margin = margin
        self.legacy = legacy

    def forward(self, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or y.numel() != a.shape[0]:
            raise self.fail(f"bottoms {tuple(a.shape)}, {tuple(b.shape)}, {tuple(y.shape)} do "
                            "not match", "give two equal-shape features and one label per pair")
        yi = torch.trunc(y.detach()).to(torch.int64)
        return _Contrastive.apply(a, b, yi, self.margin, self.legacy)  # type: ignore[no-any-return]


@register_layer("ContrastiveLoss", role="train")
def convert_contrastive_loss(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe ContrastiveLoss (layers/contrastive_loss_layer.cpp): for pairs (a, b) with
    similarity y: y ? d^2 : max(margin - d, 0)^2 (legacy_version: max(margin - d^2, 0)), summed
    / N / 2; the backward divides by (d + 1e-4)."""
    ctx.expect_bottoms(3)
    p = layer.param.contrastive_loss_param
    return ContrastiveLoss(layer.name, float(p.margin), bool(p.legacy_version))


class Accuracy(LossModule):
    """Caffe Accuracy: the fraction of samples whose label is among the top_k scores over `axis`,
    skipping `ignore_label` (and per class when a second top is asked for)."""

    def __init__(self, name: str, axis: int, top_k: int, ignore_label: int | None,
                 per_class: bool) -> None:
        super().__init__(name, "Accuracy")
        self.axis = axis
        self.top_k = top_k
        self.ignore_label = ignore_label
        self.per_class = per_class

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        if self.per_class:
            return [(), (bottom_shapes[0][self.axis],)]
        return [()]

    @torch.no_grad()
    def forward(self, scores: torch.Tensor, label: torch.Tensor) -> Any:
        shape = tuple(scores.shape)
        outer, inner = _count(shape, 0, self.axis), _count(shape, self.axis + 1)
        k = shape[self.axis]
        if label.numel() != outer * inner:
            raise self.fail(f"the label blob has {label.numel()} values, the scores {shape} "
                            f"need {outer * inner}", "check the label shape")
        x = scores.detach().reshape(outer, k, inner)
        lab = _labels(label).reshape(outer, inner)
        valid = torch.ones_like(lab, dtype=torch.bool)
        if self.ignore_label is not None:
            valid = lab != self.ignore_label
        self.check_labels(lab, valid, k)
        true_score = x.gather(1, torch.where(valid, lab, 0).unsqueeze(1))
        better = (x > true_score).sum(dim=1)
        hit = (better < self.top_k) & valid
        count = valid.sum()
        acc = torch.where(count > 0, hit.sum().float() / count.clamp(min=1).float(),
                          torch.zeros((), dtype=torch.float32)).to(scores.dtype)
        if not self.per_class:
            return acc
        lab_v = lab[valid]
        totals = torch.bincount(lab_v, minlength=k).float()
        hits = torch.bincount(lab[hit], minlength=k).float()
        per = torch.where(totals > 0, hits / totals.clamp(min=1), torch.zeros_like(totals))
        return acc, per.to(scores.dtype)


@register_layer("Accuracy", role="train")
def convert_accuracy(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Accuracy (layers/accuracy_layer.cpp): a position counts as correct when fewer than
    `top_k` classes score strictly higher than the labelled one; over the non-ignored positions
    along `axis` (0 when none). Optional second top: accuracy per class."""
    ctx.expect_bottoms(2)
    p = layer.param.accuracy_param
    axis = ctx.axis(p.axis)
    k = ctx.bottom_shapes[0][axis]
    if p.top_k > k:
        raise ctx.error(f"top_k {p.top_k} is larger than the {k} classes", "lower top_k")
    ignore = int(p.ignore_label) if p.HasField("ignore_label") else None
    return Accuracy(layer.name, axis, int(p.top_k), ignore, len(layer.tops) > 1)
