"""The SSD fork's layers (github.com/weiliu89/caffe): Permute, Normalize, PriorBox,
DetectionOutput.

DetectionOutput's top has a data-dependent number of rows (one per kept detection), so its
module declares a placeholder shape for shape inference through `output_shapes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext, Shape, filler_or_constant
from modelport.layers.registry import WEIGHT, fixed_roles, register_layer
from modelport.schema import caffe_pb2

CodeType = caffe_pb2.PriorBoxParameter
FLT_MAX = 3.4028234663852886e38


# ---- Permute ---------------------------------------------------------------------------------


class CaffePermute(CaffeModule):
    """Axis permutation: top axis i is bottom axis order[i]."""

    def __init__(self, order: tuple[int, ...]) -> None:
        super().__init__()
        self.order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.order).contiguous()

    def extra_repr(self) -> str:
        return f"order={self.order}"


@register_layer("Permute")
def convert_permute(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """SSD Permute (src/caffe/layers/permute_layer.cpp, weiliu89/caffe): top axis i is bottom
    axis order[i]; axes missing from `order` follow in their original order; an order value
    must be below the bottom's axis count and may not repeat."""
    ctx.expect_bottoms(1)
    ndim = len(ctx.bottom_shapes[0])
    order: list[int] = []
    for value in layer.param.permute_param.order:
        if value >= ndim:
            raise ctx.error(f"order {value} is not an axis of the {ndim}-axis bottom "
                            f"{ctx.bottom_shapes[0]}")
        if value in order:
            raise ctx.error(f"order lists axis {value} twice")
        order.append(int(value))
    order += [i for i in range(ndim) if i not in order]
    return CaffePermute(tuple(order))


# ---- Normalize -------------------------------------------------------------------------------


class CaffeNormalize(CaffeModule):
    """L2 normalisation of each sample (across_spatial) or of each spatial position across the
    channels, norm = sqrt(sum x^2 + eps), then a learned scale (one value or one per channel)."""

    caffe_blob_names = ("weight",)

    def __init__(self, weight: torch.Tensor, across_spatial: bool, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.across_spatial = across_spatial
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(shape[0], shape[1], -1)
        if self.across_spatial:
            norm = torch.sqrt((flat * flat).sum(dim=(1, 2), keepdim=True) + self.eps)
        else:
            norm = torch.sqrt((flat * flat).sum(dim=1, keepdim=True) + self.eps)
        scale = self.weight.reshape(1, -1, 1)
        return (flat / norm * scale).reshape(shape)

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        return [tuple(bottom_shapes[0])]

    def extra_repr(self) -> str:
        return (f"across_spatial={self.across_spatial}, channel_shared={self.weight.numel() == 1}"
                f", eps={self.eps:g}")


def _normalize_fillers(layer: Layer) -> tuple[caffe_pb2.FillerParameter, ...]:
    """norm_param.scale_filler, else the fork's default constant 1."""
    p = layer.param.norm_param
    return (filler_or_constant(p, "scale_filler", 1.0),)


@register_layer("Normalize", blobs=fixed_roles(WEIGHT), fillers=_normalize_fillers)
def convert_normalize(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """SSD Normalize (src/caffe/layers/normalize_layer.cpp, weiliu89/caffe): y = x / norm * s
    with norm = sqrt(sum(x^2) + eps) over C x H x W of each sample (across_spatial, default)
    or over C at each position; s is one learned value (channel_shared, default; a 0-axis blob)
    or one per channel; eps default 1e-10; scale_filler default constant 1."""
    ctx.expect_bottoms(1)
    p = layer.param.norm_param
    shape = ctx.bottom_shapes[0]
    if len(shape) < 2:
        raise ctx.error(f"Normalize needs a bottom with at least 2 axes, got {shape}")
    ctx.expect_blob_count(1)
    (filler,) = _normalize_fillers(layer)
    if p.channel_shared:
        # Caffe stores a 0-axis blob; it only checks that the count is 1.
        stored = layer.blobs[0].shape if layer.blobs else ()
        if math.prod(stored) != 1:
            raise ctx.error(f"channel_shared needs a one-value scale blob, the weights file "
                            f"has shape {stored}", "check channel_shared in the prototxt")
        weight = ctx.blob(0, stored, filler).reshape(1)
    else:
        stored = layer.blobs[0].shape if layer.blobs else (shape[1],)
        if math.prod(stored) != shape[1]:
            raise ctx.error(f"the scale blob has shape {stored}, the {shape[1]} channels need "
                            f"{shape[1]} values", "check channel_shared in the prototxt")
        weight = ctx.blob(0, stored, filler).reshape(shape[1])
    return CaffeNormalize(weight, p.across_spatial, p.eps)


# ---- PriorBox --------------------------------------------------------------------------------


class CaffePriorBox(CaffeModule):
    """Default boxes for a feature map: 1 x 2 x (H*W*num_priors*4), first the boxes
    (xmin, ymin, xmax, ymax normalised by the image size) then their variances. Depends only on
    the shapes of the feature map (and of the image, unless img_h/img_w are given)."""

    def __init__(self, min_sizes: list[int], max_sizes: list[int], aspect_ratios: list[float],
                 clip: bool, variances: list[float], img_hw: tuple[int, int] | None,
                 step_hw: tuple[float, float] | None, offset: float) -> None:
        super().__init__()
        self.min_sizes = min_sizes
        self.max_sizes = max_sizes
        self.aspect_ratios = aspect_ratios
        self.clip = clip
        self.variances = variances
        self.img_hw = img_hw
        self.step_hw = step_hw
        self.offset = offset

    @property
    def num_priors(self) -> int:
        return len(self.aspect_ratios) * len(self.min_sizes) + len(self.max_sizes)

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        h, w = _height_width(bottom_shapes[0])
        return [(1, 2, h * w * self.num_priors * 4)]

    def priors(self, layer_hw: tuple[int, int], image_hw: tuple[int, int]) -> np.ndarray:
        """The top blob as float32, computed with the fork's float/double mix."""
        f32 = np.float32
        layer_h, layer_w = layer_hw
        img_h, img_w = self.img_hw if self.img_hw is not None else image_hw
        if self.step_hw is not None:
            step_h, step_w = f32(self.step_hw[0]), f32(self.step_hw[1])
        else:
            step_h, step_w = f32(f32(img_h) / f32(layer_h)), f32(f32(img_w) / f32(layer_w))
        # Per prior: (box_width, box_height) as the fork's float variables hold them.
        sizes: list[tuple[np.float32, np.float32]] = []
        for s, min_size in enumerate(self.min_sizes):
            sizes.append((f32(min_size), f32(min_size)))
            if self.max_sizes:
                side = f32(math.sqrt(min_size * self.max_sizes[s]))
                sizes.append((side, side))
            # Other ratios: min_size*sqrt(ar) wide, min_size/sqrt(ar) high (max_size plays no
            # part here in the fork's ssd branch, nor in OpenCV's port).
            for ar in self.aspect_ratios:
                if abs(ar - 1.0) < 1e-6:
                    continue
                root = math.sqrt(ar)
                sizes.append((f32(min_size * root), f32(min_size / root)))
        half = np.array([[float(bw) / 2.0, float(bh) / 2.0] for bw, bh in sizes])  # (P, 2)
        cx = (np.arange(layer_w, dtype=f32) + f32(self.offset)).astype(f32) * step_w
        cy = (np.arange(layer_h, dtype=f32) + f32(self.offset)).astype(f32) * step_h
        cx64 = cx.astype(np.float64)[None, :, None]  # (1, W, 1)
        cy64 = cy.astype(np.float64)[:, None, None]  # (H, 1, 1)
        boxes = np.empty((layer_h, layer_w, len(sizes), 4), dtype=np.float64)
        boxes[..., 0] = (cx64 - half[None, None, :, 0]) / img_w
        boxes[..., 1] = (cy64 - half[None, None, :, 1]) / img_h
        boxes[..., 2] = (cx64 + half[None, None, :, 0]) / img_w
        boxes[..., 3] = (cy64 + half[None, None, :, 1]) / img_h
        coords = boxes.astype(f32).reshape(-1)
        if self.clip:
            coords = np.minimum(np.maximum(coords, f32(0)), f32(1))
        variances = np.array(self.variances, dtype=f32)
        if len(self.variances) == 1:
            var = np.full(coords.shape, variances[0], dtype=f32)
        else:
            var = np.tile(variances, coords.size // 4)
        return np.stack([coords, var])[None]

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        layer_hw = _height_width(tuple(x.shape))
        image_hw = _height_width(tuple(image.shape)) if image is not None else (0, 0)
        return torch.from_numpy(self.priors(layer_hw, image_hw)).to(x.device)

    def extra_repr(self) -> str:
        return (f"min_sizes={self.min_sizes}, max_sizes={self.max_sizes}, "
                f"aspect_ratios={[round(a, 4) for a in self.aspect_ratios]}, clip={self.clip}, "
                f"variances={self.variances}, img_hw={self.img_hw}, step_hw={self.step_hw}, "
                f"offset={self.offset:g}")


def _height_width(shape: Shape) -> tuple[int, int]:
    """Caffe's legacy height()/width(): axes 2 and 3, 1 where the blob has fewer axes."""
    return (shape[2] if len(shape) > 2 else 1, shape[3] if len(shape) > 3 else 1)


@register_layer("PriorBox")
def convert_prior_box(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """SSD PriorBox (src/caffe/layers/prior_box_layer.cpp, weiliu89/caffe): for every feature
    map cell (h, w), centre ((w+offset)*step_w, (h+offset)*step_h) with step = img/layer size
    unless step/step_h/step_w is given; per min_size (truncated to int, as the fork does): a
    min_size square, a sqrt(min*max) square when max_size is given, then one box per aspect
    ratio other than 1 (1 first, each new ratio r then 1/r when flip), width min_size*sqrt(r),
    height min_size/sqrt(r). Coordinates are divided by the image size (img_size/img_h/img_w or
    bottom[1]), optionally clipped to [0, 1]; channel 1 holds the variances (default 0.1)."""
    ctx.expect_bottoms(1, 2)
    p = layer.param.prior_box_param
    if not p.min_size:
        raise ctx.error("min_size is not set", "give at least one min_size")
    if any(m <= 0 for m in p.min_size):
        raise ctx.error(f"min_size {list(p.min_size)} must be positive")
    min_sizes = [int(m) for m in p.min_size]  # the fork stores them in an int
    max_sizes: list[int] = []
    if p.max_size:
        if len(p.max_size) != len(p.min_size):
            raise ctx.error(f"{len(p.max_size)} max_size values for {len(p.min_size)} "
                            "min_size values; give one per min_size")
        for lo, hi in zip(p.min_size, p.max_size):
            if hi <= lo:
                raise ctx.error(f"max_size {hi:g} must be greater than min_size {lo:g}")
        max_sizes = [int(m) for m in p.max_size]
    aspect_ratios = [1.0]
    for ar in p.aspect_ratio:
        if any(abs(ar - seen) < 1e-6 for seen in aspect_ratios):
            continue
        aspect_ratios.append(float(ar))
        if p.flip:
            aspect_ratios.append(float(np.float32(1.0 / float(ar))))
    if len(p.variance) > 1 and len(p.variance) != 4:
        raise ctx.error(f"{len(p.variance)} variance values; give 1 or 4")
    if any(v <= 0 for v in p.variance):
        raise ctx.error(f"variance {list(p.variance)} must be positive")
    variances = [float(v) for v in p.variance] or [0.1]
    img_hw: tuple[int, int] | None = None
    if p.HasField("img_h") or p.HasField("img_w"):
        if p.HasField("img_size"):
            raise ctx.error("give either img_size or img_h/img_w, not both")
        if p.img_h <= 0 or p.img_w <= 0:
            raise ctx.error("img_h and img_w must both be set and positive")
        img_hw = (int(p.img_h), int(p.img_w))
    elif p.HasField("img_size"):
        if p.img_size <= 0:
            raise ctx.error("img_size must be positive")
        img_hw = (int(p.img_size), int(p.img_size))
    step_hw: tuple[float, float] | None = None
    if p.HasField("step_h") or p.HasField("step_w"):
        if p.HasField("step"):
            raise ctx.error("give either step or step_h/step_w, not both")
        if p.step_h <= 0 or p.step_w <= 0:
            raise ctx.error("step_h and step_w must both be set and positive")
        step_hw = (float(p.step_h), float(p.step_w))
    elif p.HasField("step"):
        if p.step <= 0:
            raise ctx.error("step must be positive")
        step_hw = (float(p.step), float(p.step))
    if img_hw is None and len(layer.bottoms) < 2:
        raise ctx.error("without img_size/img_h/img_w the image size comes from a second "
                        "bottom (the data blob), and there is none",
                        "add the data blob as the second bottom or set img_size")
    module = CaffePriorBox(min_sizes, max_sizes, aspect_ratios, p.clip, variances, img_hw,
                           step_hw, p.offset)
    h, w = _height_width(ctx.bottom_shapes[0])
    if h * w * module.num_priors == 0:
        raise ctx.error(f"the feature map {ctx.bottom_shapes[0]} gives no priors")
    return module


# ---- DetectionOutput -------------------------------------------------------------------------


def decode_boxes(priors: torch.Tensor, variances: torch.Tensor, loc: torch.Tensor,
                 code_type: int, variance_encoded_in_target: bool) -> torch.Tensor:
    """bbox_util.cpp DecodeBBox for P priors (P x 4) and predictions (... x P x 4), float32."""
    if variance_encoded_in_target:
        variances = torch.ones_like(variances)
    pxmin, pymin, pxmax, pymax = priors.unbind(-1)
    lx, ly, lx2, ly2 = loc.unbind(-1)
    v0, v1, v2, v3 = variances.unbind(-1)
    if code_type == CodeType.CORNER:
        out = (pxmin + v0 * lx, pymin + v1 * ly, pxmax + v2 * lx2, pymax + v3 * ly2)
    elif code_type == CodeType.CENTER_SIZE:
        pw, ph = pxmax - pxmin, pymax - pymin
        pcx, pcy = (pxmin + pxmax) / 2, (pymin + pymax) / 2
        cx = v0 * lx * pw + pcx
        cy = v1 * ly * ph + pcy
        w = torch.exp(v2 * lx2) * pw
        h = torch.exp(v3 * ly2) * ph
        out = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    elif code_type == CodeType.CORNER_SIZE:
        pw, ph = pxmax - pxmin, pymax - pymin
        out = (pxmin + v0 * lx * pw, pymin + v1 * ly * ph, pxmax + v2 * lx2 * pw,
               pymax + v3 * ly2 * ph)
    else:
        raise ValueError(f"unknown code_type {code_type}")
    return torch.stack(out, dim=-1)


def jaccard_overlap(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """bbox_util.cpp JaccardOverlap (normalised boxes) of one box against K boxes, float32:
    0 when the boxes do not overlap with positive width and height; a box with xmax < xmin or
    ymax < ymin has size 0."""

    def size(b: torch.Tensor) -> torch.Tensor:
        w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
        return torch.where((w < 0) | (h < 0), torch.zeros_like(w), w * h)

    iw = torch.minimum(box[2], boxes[:, 2]) - torch.maximum(box[0], boxes[:, 0])
    ih = torch.minimum(box[3], boxes[:, 3]) - torch.maximum(box[1], boxes[:, 1])
    inter = iw * ih
    union = size(box) + size(boxes) - inter
    overlap = inter / torch.where(union == 0, torch.ones_like(union), union)
    return torch.where((iw > 0) & (ih > 0), overlap, torch.zeros_like(overlap))


def nms_fast(boxes: torch.Tensor, scores: torch.Tensor, score_threshold: float,
             nms_threshold: float, eta: float, top_k: int) -> list[int]:
    """bbox_util.cpp ApplyNMSFast: candidates with score > score_threshold, stably sorted by
    descending score, the first top_k (if top_k > -1); a candidate is kept when its overlap with
    every kept box is <= the threshold, which shrinks by eta (while > 0.5) after each keep."""
    candidates = torch.nonzero(scores > score_threshold).flatten()
    order = torch.sort(scores[candidates], descending=True, stable=True).indices
    candidates = candidates[order]
    if top_k > -1:
        candidates = candidates[:top_k]
    threshold = np.float32(nms_threshold)
    kept: list[int] = []
    for idx in candidates.tolist():
        keep = True
        if kept:
            overlaps = jaccard_overlap(boxes[idx], boxes[kept])
            keep = bool((overlaps <= float(threshold)).all())
        if keep:
            kept.append(idx)
            if eta < 1 and threshold > 0.5:
                threshold = np.float32(threshold * np.float32(eta))
    return kept


class CaffeDetectionOutput(CaffeModule):
    """Decode SSD predictions against the priors, per-class NMS, keep_top_k per image.

    Output 1 x 1 x num_det x 7, rows [image_id, label, score, xmin, ymin, xmax, ymax] per
    image, labels ascending, each label's boxes in NMS order (or descending score after
    keep_top_k); with no detection at all, one row [i, -1, -1, -1, -1, -1, -1] per image i.
    """

    def __init__(self, num_classes: int, share_location: bool, background_label_id: int,
                 code_type: int, variance_encoded_in_target: bool, keep_top_k: int,
                 confidence_threshold: float, nms_threshold: float, eta: float,
                 top_k: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.share_location = share_location
        self.background_label_id = background_label_id
        self.code_type = code_type
        self.variance_encoded_in_target = variance_encoded_in_target
        self.keep_top_k = keep_top_k
        self.confidence_threshold = confidence_threshold
        self.nms_threshold = nms_threshold
        self.eta = eta
        self.top_k = top_k

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        # The row count depends on the data; Caffe itself reshapes to 1 x 1 x 1 x 7 at setup.
        return [(1, 1, 1, 7)]

    def forward(self, loc: torch.Tensor, conf: torch.Tensor,
                prior: torch.Tensor) -> torch.Tensor:
        num = loc.shape[0]
        num_priors = prior.shape[2] // 4
        num_loc_classes = 1 if self.share_location else self.num_classes
        loc = loc.reshape(num, num_priors, num_loc_classes, 4).float()
        conf = conf.reshape(num, num_priors, self.num_classes).float()
        prior_boxes = prior[0, 0].reshape(num_priors, 4).float()
        prior_vars = prior[0, 1].reshape(num_priors, 4).float()
        decoded = decode_boxes(prior_boxes, prior_vars, loc.transpose(1, 2), self.code_type,
                               self.variance_encoded_in_target)  # N x loc classes x P x 4
        rows: list[torch.Tensor] = []
        for i in range(num):
            picked: dict[int, list[int]] = {}
            for c in range(self.num_classes):
                if c == self.background_label_id:
                    continue
                boxes = decoded[i, 0 if self.share_location else c]
                picked[c] = nms_fast(boxes, conf[i, :, c], self.confidence_threshold,
                                     self.nms_threshold, self.eta, self.top_k)
            total = sum(len(v) for v in picked.values())
            if self.keep_top_k > -1 and total > self.keep_top_k:
                pairs = [(float(conf[i, idx, c]), c, idx)
                         for c in sorted(picked) for idx in picked[c]]
                pairs.sort(key=lambda t: -t[0])  # stable: ties keep label, then NMS order
                picked = {}
                for _, c, idx in pairs[: self.keep_top_k]:
                    picked.setdefault(c, []).append(idx)
            for c in sorted(picked):
                if not picked[c]:
                    continue
                index = torch.tensor(picked[c], dtype=torch.long, device=loc.device)
                boxes = decoded[i, 0 if self.share_location else c].index_select(0, index)
                scores = conf[i, :, c].index_select(0, index)
                head = torch.tensor([float(i), float(c)], device=loc.device).expand(len(index), 2)
                rows.append(torch.cat([head, scores[:, None], boxes], dim=1))
        if not rows:
            empty = torch.full((num, 7), -1.0, device=loc.device)
            empty[:, 0] = torch.arange(num, dtype=empty.dtype, device=loc.device)
            return empty.reshape(1, 1, num, 7)
        return torch.cat(rows, dim=0).reshape(1, 1, -1, 7)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, share_location={self.share_location}, "
                f"background={self.background_label_id}, code_type={self.code_type}, "
                f"nms_threshold={self.nms_threshold:g}, top_k={self.top_k}, eta={self.eta:g}, "
                f"keep_top_k={self.keep_top_k}, confidence_threshold="
                f"{self.confidence_threshold:g}")


def _legacy_dim(shape: Shape, axis: int) -> int:
    return shape[axis] if len(shape) > axis else 1


@register_layer("DetectionOutput")
def convert_detection_output(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """SSD DetectionOutput (src/caffe/layers/detection_output_layer.cpp and util/bbox_util.cpp,
    weiliu89/caffe): bottoms loc (N x P*L*4), conf (N x P*num_classes, already softmaxed),
    priors (1 x 2 x P*4). Decodes each prediction against its prior (CORNER, CENTER_SIZE or
    CORNER_SIZE; variances applied unless variance_encoded_in_target), then per image and
    non-background class ApplyNMSFast (score > confidence_threshold, top_k, nms_threshold,
    adaptive eta), then keep_top_k by score. Top 1 x 1 x num_det x 7 [image_id, label, score,
    xmin, ymin, xmax, ymax]; no detection gives one row [i, -1, ...] per image."""
    ctx.expect_bottoms(3)
    p = layer.param.detection_output_param
    if not p.HasField("num_classes"):
        raise ctx.error("num_classes is not set", "set detection_output_param.num_classes")
    num_classes = int(p.num_classes)
    nms = p.nms_param
    if nms.nms_threshold < 0:
        raise ctx.error(f"nms_threshold {nms.nms_threshold:g} must be non-negative")
    if not 0 < nms.eta <= 1:
        raise ctx.error(f"eta {nms.eta:g} must be in (0, 1]")
    if p.code_type not in (CodeType.CORNER, CodeType.CENTER_SIZE, CodeType.CORNER_SIZE):
        raise ctx.error(f"unknown code_type {p.code_type}")
    if p.share_location and p.background_label_id == -1:
        # DecodeBBoxesAll skips the shared location "label" -1 as if it were the background,
        # and the forward pass then aborts: Caffe cannot run this configuration.
        raise ctx.error("share_location with background_label_id -1 makes Caffe skip decoding "
                        "the shared locations (it aborts)",
                        "use a background_label_id that is a class (or -2 for none)")
    loc_shape, conf_shape, prior_shape = ctx.bottom_shapes
    if loc_shape[0] != conf_shape[0]:
        raise ctx.error(f"loc has {loc_shape[0]} samples, conf has {conf_shape[0]}")
    num_priors = _legacy_dim(prior_shape, 2) // 4
    if _legacy_dim(prior_shape, 1) != 2 or prior_shape[0] != 1:
        raise ctx.error(f"the prior bottom must be 1 x 2 x (num_priors*4) (PriorBox/Concat "
                        f"output), got {prior_shape}")
    num_loc_classes = 1 if p.share_location else num_classes
    if _legacy_dim(loc_shape, 1) != num_priors * num_loc_classes * 4:
        raise ctx.error(f"loc has {_legacy_dim(loc_shape, 1)} channels; {num_priors} priors x "
                        f"{num_loc_classes} location classes x 4 need "
                        f"{num_priors * num_loc_classes * 4}",
                        "flatten/concat the loc predictions to N x (P*4)")
    if _legacy_dim(conf_shape, 1) != num_priors * num_classes:
        raise ctx.error(f"conf has {_legacy_dim(conf_shape, 1)} channels; {num_priors} priors "
                        f"x {num_classes} classes need {num_priors * num_classes}",
                        "flatten/concat the confidences to N x (P*num_classes)")
    if any(math.prod(s[1:]) != _legacy_dim(s, 1) for s in (loc_shape, conf_shape)):
        raise ctx.error(f"loc {loc_shape} and conf {conf_shape} must be N x C (with trailing "
                        "axes of size 1 at most)", "flatten them first")
    if p.visualize or p.save_output_param.output_directory:
        ctx.notes.append(f"{layer.name}: visualize/save_output_param ignored (side effects "
                         "only; the top is unaffected)")
    threshold = float(p.confidence_threshold) if p.HasField("confidence_threshold") else -FLT_MAX
    top_k = int(nms.top_k) if nms.HasField("top_k") else -1
    return CaffeDetectionOutput(num_classes, p.share_location, int(p.background_label_id),
                                int(p.code_type), p.variance_encoded_in_target,
                                int(p.keep_top_k), threshold, float(nms.nms_threshold),
                                float(nms.eta), top_k)
