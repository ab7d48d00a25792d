"""SSD fork layers (Permute, Normalize, PriorBox, DetectionOutput).

No real-Caffe golden exists for the SSD fork here, so the references are (a) numpy
re-derivations of weiliu89/caffe's C++ (permute_layer.cpp, normalize_layer.cpp,
prior_box_layer.cpp, bbox_util.cpp), with PriorBox coordinates worked out by hand, and (b)
OpenCV's cv2.dnn, which implements these four layers from Caffe prototxts: a small two-scale
SSD head is written as prototxt + caffemodel and both run it.
"""

from __future__ import annotations

import math
import pathlib

import cv2
import numpy as np
import pytest
import torch

from golden_support import assert_blob_close
from modelport.backends.torch_module import build_module
from modelport.errors import ShapeError
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Blob, Net
from modelport.layers.registry import lookup
from modelport.layers.ssd import jaccard_overlap, nms_fast
from modelport.pipeline import load_net, parse_net

RNG = np.random.RandomState(77)


def net_of(body: str, shapes: dict[str, tuple[int, ...]],
           blobs: dict[str, list[np.ndarray]] | None = None) -> Net:
    inputs = "".join(
        f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape {{ '
        + " ".join(f"dim: {d}" for d in s) + " } } }\n" for n, s in shapes.items())
    net = parse_net(inputs + body)
    if blobs:
        layers = tuple(lay.with_blobs(tuple(Blob(b) for b in blobs[lay.name]))
                       if lay.name in blobs else lay for lay in net.layers)
        net = Net(net.name, layers, net.source, net.phase, net.notes)
    return net


def forward(net: Net, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    module = build_module(net)
    with torch.no_grad():
        blobs = module.forward_blobs(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in blobs.items()}


# ---- Permute ---------------------------------------------------------------------------------


@pytest.mark.parametrize("order,full", [((0, 2, 3, 1), (0, 2, 3, 1)), ((3,), (3, 0, 1, 2)),
                                         ((1, 0), (1, 0, 2, 3)), ((), (0, 1, 2, 3))])
def test_permute_fills_missing_axes_in_order(order, full) -> None:
    x = RNG.randn(2, 3, 4, 5).astype(np.float32)
    orders = " ".join(f"order: {o}" for o in order)
    net = net_of(f'layer {{ name: "p" type: "Permute" bottom: "x" top: "y" '
                 f"permute_param {{ {orders} }} }}", {"x": x.shape})
    y = forward(net, x=x)["y"]
    np.testing.assert_array_equal(y, np.transpose(x, full))


def test_permute_errors() -> None:
    for orders, message in (("order: 0 order: 0", "twice"), ("order: 4", "not an axis")):
        net = net_of(f'layer {{ name: "p" type: "Permute" bottom: "x" top: "y" '
                     f"permute_param {{ {orders} }} }}", {"x": (2, 3, 4, 5)})
        with pytest.raises(ShapeError, match=message):
            build_module(net)


# ---- Normalize -------------------------------------------------------------------------------


def normalize_reference(x: np.ndarray, scale: np.ndarray, across_spatial: bool,
                        eps: float) -> np.ndarray:
    """normalize_layer.cpp Forward_cpu, in float64."""
    x64 = x.astype(np.float64)
    out = np.empty_like(x64)
    for n in range(x.shape[0]):
        if across_spatial:
            norm = math.sqrt((x64[n] ** 2).sum() + eps)
        else:
            norm = np.sqrt((x64[n] ** 2).sum(axis=0, keepdims=True) + eps)
        out[n] = x64[n] / norm
    c = x.shape[1]
    return out * (scale.reshape(1, c, 1, 1) if scale.size == c else float(scale.reshape(-1)[0]))


@pytest.mark.parametrize("across_spatial", [True, False])
@pytest.mark.parametrize("channel_shared", [True, False])
@pytest.mark.parametrize("eps", [1e-10, 0.7])
def test_normalize(across_spatial, channel_shared, eps) -> None:
    x = RNG.randn(2, 3, 4, 5).astype(np.float32)
    x[1, :, 0, 0] = 0  # an all-zero position: only eps keeps the norm finite
    scale = (np.array(7.5, np.float32) if channel_shared
             else RNG.uniform(5, 20, 3).astype(np.float32))
    net = net_of(f'layer {{ name: "norm" type: "Normalize" bottom: "x" top: "y" norm_param {{ '
                 f"across_spatial: {str(across_spatial).lower()} "
                 f"channel_shared: {str(channel_shared).lower()} eps: {eps} }} }}",
                 {"x": x.shape}, {"norm": [scale]})
    y = forward(net, x=x)["y"]
    assert_blob_close("y", y, normalize_reference(x, scale, across_spatial, eps).astype(np.float32))


def test_normalize_scale_blob_must_match_channel_sharing() -> None:
    body = ('layer { name: "norm" type: "Normalize" bottom: "x" top: "y" '
            "norm_param { channel_shared: true } }")
    with pytest.raises(ShapeError, match="one-value"):
        build_module(net_of(body, {"x": (1, 3, 2, 2)}, {"norm": [np.ones(3, np.float32)]}))
    body = body.replace("true", "false")
    with pytest.raises(ShapeError, match="3 values"):
        build_module(net_of(body, {"x": (1, 3, 2, 2)}, {"norm": [np.ones(4, np.float32)]}))


# ---- PriorBox --------------------------------------------------------------------------------


def test_prior_box_two_layers_worked_by_hand() -> None:
    """Image 20 x 30 (H x W). Layer A: 2 x 3 map, min 4, max 9, aspect_ratio 2 (flip), so
    step 10 x 10, centres x 5/15/25, y 5/15, priors per cell: 4x4, 6x6 (sqrt(4*9)),
    4*sqrt2 x 4/sqrt2, 4/sqrt2 x 4*sqrt2. Layer B: 1 x 2 map, min 12.7 (the fork truncates to
    12), step 8 (given), offset 0.25, clip, one variance: centres x 2/10, y 2."""
    body = '''
layer { name: "pa" type: "PriorBox" bottom: "fa" bottom: "img" top: "pa"
  prior_box_param { min_size: 4 max_size: 9 aspect_ratio: 2 flip: true
                    variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }
layer { name: "pb" type: "PriorBox" bottom: "fb" bottom: "img" top: "pb"
  prior_box_param { min_size: 12.7 aspect_ratio: 1 step: 8 offset: 0.25 clip: true
                    variance: 0.3 } }
'''
    shapes = {"fa": (1, 5, 2, 3), "fb": (1, 5, 1, 2), "img": (1, 3, 20, 30)}
    out = forward(net_of(body, shapes), **{k: np.zeros(s, np.float32) for k, s in shapes.items()})
    r2 = math.sqrt(2)
    expected_a = []
    for cy in (5, 15):
        for cx in (5, 15, 25):
            for bw, bh in ((4, 4), (6, 6), (4 * r2, 4 / r2), (4 / r2, 4 * r2)):
                expected_a.append([(cx - bw / 2) / 30, (cy - bh / 2) / 20,
                                   (cx + bw / 2) / 30, (cy + bh / 2) / 20])
    pa = out["pa"]
    assert pa.shape == (1, 2, 2 * 3 * 4 * 4)
    np.testing.assert_allclose(pa[0, 0], np.array(expected_a).reshape(-1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(pa[0, 1], np.tile([0.1, 0.1, 0.2, 0.2], 24), rtol=1e-7)
    # Layer B: aspect_ratio 1 is dropped as a duplicate; centres (2, 2) and (10, 2); box 12 x 12
    expected_b = [[(2 - 6) / 30, (2 - 6) / 20, (2 + 6) / 30, (2 + 6) / 20],
                  [(10 - 6) / 30, (2 - 6) / 20, (10 + 6) / 30, (2 + 6) / 20]]
    expected_b = np.clip(np.array(expected_b), 0, 1).reshape(-1)
    pb = out["pb"]
    assert pb.shape == (1, 2, 8)
    np.testing.assert_allclose(pb[0, 0], expected_b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(pb[0, 1], np.full(8, 0.3), rtol=1e-7)


def test_prior_box_img_size_and_errors() -> None:
    body = ('layer { name: "p" type: "PriorBox" bottom: "f" top: "p" prior_box_param { '
            "min_size: 10 img_h: 40 img_w: 60 } }")
    out = forward(net_of(body, {"f": (1, 2, 2, 3)}), f=np.zeros((1, 2, 2, 3), np.float32))["p"]
    # step 20 x 20: first cell centre (10, 10), box 10 x 10.
    np.testing.assert_allclose(out[0, 0, :4], [5 / 60, 5 / 40, 15 / 60, 15 / 40], atol=1e-7)
    np.testing.assert_allclose(out[0, 1], 0.1, rtol=1e-7)  # default variance
    for params, message in (("min_size: 10", "second bottom"),
                            ("min_size: 10 max_size: 5 img_size: 9", "greater than"),
                            ("img_size: 9", "min_size is not set"),
                            ("min_size: 4 img_size: 9 variance: 1 variance: 2", "1 or 4"),
                            ("min_size: 4 img_size: 9 img_h: 3 img_w: 3", "not both")):
        net = net_of(f'layer {{ name: "p" type: "PriorBox" bottom: "f" top: "p" '
                     f"prior_box_param {{ {params} }} }}", {"f": (1, 2, 2, 3)})
        with pytest.raises(ShapeError, match=message):
            build_module(net)


# ---- NMS and DetectionOutput -----------------------------------------------------------------


def test_jaccard_overlap_hand_values() -> None:
    box = torch.tensor([0.0, 0.0, 0.4, 0.2])
    others = torch.tensor([[0.2, 0.0, 0.6, 0.2],    # half overlapping: 0.04 / 0.12
                           [0.4, 0.0, 0.8, 0.2],    # touching edge: 0
                           [0.1, 0.05, 0.3, 0.15],  # inside: 0.02 / 0.08
                           [0.3, 0.1, 0.1, 0.3]])   # invalid (xmax < xmin): 0
    np.testing.assert_allclose(jaccard_overlap(box, others).numpy(),
                               [0.04 / 0.12, 0.0, 0.02 / 0.08, 0.0], rtol=1e-6)


def test_nms_fast_hand_made_boxes() -> None:
    """Boxes 0-2 overlap in a chain (IoU(0,1) = 0.6, IoU(1,2) = 0.6, IoU(0,2) = 0.2),
    box 3 is apart; scores 0.9, 0.8, 0.7, 0.6, and box 4 (0.05) is under the threshold."""
    boxes = torch.tensor([[0.0, 0.0, 0.4, 0.1], [0.1, 0.0, 0.5, 0.1], [0.2, 0.0, 0.6, 0.1],
                          [0.0, 0.5, 0.2, 0.7], [0.0, 0.0, 0.4, 0.1]])
    # IoU(0,1): inter 0.03, union 0.05 -> 0.6; IoU(0,2): inter 0.02, union 0.06 -> 1/3
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.05])
    assert nms_fast(boxes, scores, 0.1, 0.5, 1.0, -1) == [0, 2, 3]   # 1 suppressed by 0
    assert nms_fast(boxes, scores, 0.1, 0.3, 1.0, -1) == [0, 3]      # 2 also (1/3 > 0.3)
    assert nms_fast(boxes, scores, 0.1, 0.7, 1.0, -1) == [0, 1, 2, 3]
    assert nms_fast(boxes, scores, 0.1, 0.7, 1.0, 2) == [0, 1]       # top_k before NMS
    assert nms_fast(boxes, scores, 0.0, 0.5, 1.0, -1) == [0, 2, 3]   # box 4 = box 0
    assert nms_fast(boxes, scores, 0.65, 0.5, 1.0, -1) == [0, 2]     # only 0.9, 0.8, 0.7


def test_nms_fast_threshold_strict_and_eta() -> None:
    boxes = torch.tensor([[0.0, 0.0, 0.4, 0.1], [0.1, 0.0, 0.5, 0.1], [0.2, 0.0, 0.6, 0.1],
                          [0.0, 0.5, 0.2, 0.7]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert nms_fast(boxes, scores, 0.7, 0.9, 1.0, -1) == [0, 1]  # 0.7 is not > 0.7
    # An overlap equal to the NMS threshold keeps the box (Caffe: keep = overlap <= threshold).
    exact = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]])  # IoU 2/4
    assert nms_fast(exact, scores[:2], 0.0, 0.5, 1.0, -1) == [0, 1]
    assert nms_fast(exact, scores[:2], 0.0, 0.49, 1.0, -1) == [0]
    # eta: at 0.65 every box survives; with eta 0.9 keeping box 0 shrinks the threshold to
    # 0.585 before box 1 (IoU 0.6 with box 0) is tested, so box 1 goes.
    assert nms_fast(boxes, scores, 0.0, 0.65, 1.0, -1) == [0, 1, 2, 3]
    assert nms_fast(boxes, scores, 0.0, 0.65, 0.9, -1) == [0, 2, 3]
    # The threshold shrinks only while it is above 0.5: 0.5 stays 0.5 (box 2, IoU 1/3, stays),
    # 0.52 becomes 0.26 (box 2 goes).
    assert nms_fast(boxes, scores, 0.0, 0.5, 0.5, -1) == [0, 2, 3]
    assert nms_fast(boxes, scores, 0.0, 0.52, 0.5, -1) == [0, 3]


def detection_net(num_classes: int, params: str, num_priors: int, num: int = 1) -> Net:
    body = (f'layer {{ name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
            f'bottom: "prior" top: "det" detection_output_param {{ num_classes: {num_classes} '
            f"{params} }} }}")
    return net_of(body, {"loc": (num, num_priors * 4), "conf": (num, num_priors * num_classes),
                         "prior": (1, 2, num_priors * 4)})


def test_detection_output_hand_case() -> None:
    """Three priors, CORNER code with variances, two images, classes {0: background, 1, 2}."""
    priors = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.9, 0.8]],
                      np.float32)
    variances = np.tile(np.array([0.1, 0.1, 0.2, 0.2], np.float32), (3, 1))
    prior = np.stack([priors.reshape(-1), variances.reshape(-1)])[None]
    loc = np.zeros((2, 3, 4), np.float32)
    loc[0, 2] = [1.0, -1.0, 0.5, 0.5]  # prior 2 of image 0 moves: +0.1, -0.1, +0.1, +0.1
    conf = np.array([[[0.1, 0.7, 0.2], [0.2, 0.6, 0.2], [0.5, 0.1, 0.4]],
                     [[0.9, 0.05, 0.05], [0.95, 0.03, 0.02], [0.9, 0.05, 0.05]]], np.float32)
    net = detection_net(3, "nms_param { nms_threshold: 0.5 } confidence_threshold: 0.15 "
                        "code_type: CORNER", 3, num=2)
    det = forward(net, loc=loc.reshape(2, -1), conf=conf.reshape(2, -1), prior=prior)["det"]
    moved = priors[2] + variances[2] * loc[0, 2]  # (0.7, 0.5, 1.0, 0.9)
    expected = np.array([
        [0, 1, 0.7, *priors[0]],   # class 1: prior 0 (0.7) suppresses prior 1 (IoU 0.818)
        [0, 2, 0.4, *moved],       # class 2: prior 2 (0.4), then prior 0/1 (0.2) ...
        [0, 2, 0.2, *priors[0]],   # ... prior 0 kept (no overlap with moved prior 2),
    ], np.float32)                 # prior 1 (0.2, later index) suppressed by prior 0
    assert det.shape == (1, 1, 3, 7)
    np.testing.assert_allclose(det[0, 0], expected, rtol=1e-6, atol=1e-7)
    # keep_top_k 2 keeps the two best scores, still listed by label.
    net = detection_net(3, "nms_param { nms_threshold: 0.5 } confidence_threshold: 0.15 "
                        "code_type: CORNER keep_top_k: 2", 3, num=2)
    det = forward(net, loc=loc.reshape(2, -1), conf=conf.reshape(2, -1), prior=prior)["det"]
    np.testing.assert_allclose(det[0, 0], expected[:2], rtol=1e-6, atol=1e-7)


def test_detection_output_no_detections_gives_minus_one_rows() -> None:
    conf = np.full((2, 2 * 3), 0.1, np.float32)
    prior = np.stack([np.array([0, 0, 0.5, 0.5, 0.5, 0.5, 1, 1], np.float32),
                      np.full(8, 0.1, np.float32)])[None]
    net = detection_net(3, "confidence_threshold: 0.5", 2, num=2)
    det = forward(net, loc=np.zeros((2, 8), np.float32), conf=conf, prior=prior)["det"]
    expected = np.full((1, 1, 2, 7), -1, np.float32)
    expected[0, 0, :, 0] = [0, 1]
    np.testing.assert_array_equal(det, expected)
    assert build_module(net).blob_shapes["det"] == (1, 1, 1, 7)  # shape inference placeholder


def decode_reference(prior: np.ndarray, var: np.ndarray, loc: np.ndarray, code: str,
                     in_target: bool) -> np.ndarray:
    """bbox_util.cpp DecodeBBox, one box, float64."""
    v = np.ones(4) if in_target else var.astype(np.float64)
    p, d = prior.astype(np.float64), loc.astype(np.float64)
    if code == "CORNER":
        return p + v * d
    pw, ph = p[2] - p[0], p[3] - p[1]
    if code == "CORNER_SIZE":
        return p + v * d * np.array([pw, ph, pw, ph])
    cx, cy = v[0] * d[0] * pw + (p[0] + p[2]) / 2, v[1] * d[1] * ph + (p[1] + p[3]) / 2
    w, h = math.exp(v[2] * d[2]) * pw, math.exp(v[3] * d[3]) * ph
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


@pytest.mark.parametrize("code", ["CORNER", "CENTER_SIZE", "CORNER_SIZE"])
@pytest.mark.parametrize("in_target", [False, True])
def test_detection_output_decoding_and_per_class_locations(code, in_target) -> None:
    """share_location false: class c uses its own loc column; with NMS off (threshold 1) and
    one scored prior per class, each output row is one decoded box."""
    num_priors, num_classes = 4, 3
    priors = np.array([[0.1, 0.2, 0.4, 0.5], [0.5, 0.1, 0.7, 0.6], [0.2, 0.6, 0.5, 0.9],
                       [0.0, 0.0, 1.0, 1.0]], np.float32)
    var = np.array([[0.1, 0.2, 0.3, 0.4]] * num_priors, np.float32)
    loc = RNG.uniform(-1, 1, (1, num_priors, num_classes, 4)).astype(np.float32)
    conf = np.zeros((1, num_priors, num_classes), np.float32)
    conf[0, 1, 1] = 0.9
    conf[0, 2, 2] = 0.8
    net = net_of(f'layer {{ name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
                 f'bottom: "prior" top: "det" detection_output_param {{ num_classes: 3 '
                 f"share_location: false code_type: {code} variance_encoded_in_target: "
                 f"{str(in_target).lower()} confidence_threshold: 0.5 "
                 "nms_param { nms_threshold: 1 } } }",
                 {"loc": (1, num_priors * num_classes * 4), "conf": (1, num_priors * 3),
                  "prior": (1, 2, num_priors * 4)})
    prior = np.stack([priors.reshape(-1), var.reshape(-1)])[None]
    det = forward(net, loc=loc.reshape(1, -1), conf=conf.reshape(1, -1), prior=prior)["det"]
    expected = np.array([
        [0, 1, 0.9, *decode_reference(priors[1], var[1], loc[0, 1, 1], code, in_target)],
        [0, 2, 0.8, *decode_reference(priors[2], var[2], loc[0, 2, 2], code, in_target)]])
    np.testing.assert_allclose(det[0, 0], expected, rtol=1e-5, atol=1e-6)


def test_detection_output_checks_bottom_sizes() -> None:
    net = net_of('layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
                 'bottom: "prior" top: "det" detection_output_param { num_classes: 3 } }',
                 {"loc": (1, 12), "conf": (1, 10), "prior": (1, 2, 12)})
    with pytest.raises(ShapeError, match="conf has 10 channels"):
        build_module(net)
    with pytest.raises(ShapeError, match="background_label_id -1"):
        build_module(detection_net(3, "background_label_id: -1", 3))


# ---- a two-scale SSD head against OpenCV's cv2.dnn -------------------------------------------

NUM_CLASSES = 4
SSD_PROTOTXT = """
name: "tiny_ssd"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 32 dim: 40 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv1_norm" type: "Normalize" bottom: "conv1" top: "conv1_norm"
  norm_param { across_spatial: false channel_shared: false } }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "conv2_norm" type: "Normalize" bottom: "conv2" top: "conv2_norm"
  norm_param { across_spatial: true channel_shared: true } }
""" + "".join(f"""
layer {{ name: "{f}_loc" type: "Convolution" bottom: "{f}_norm" top: "{f}_loc"
  convolution_param {{ num_output: {4 * p} kernel_size: 3 pad: 1 }} }}
layer {{ name: "{f}_loc_perm" type: "Permute" bottom: "{f}_loc" top: "{f}_loc_perm"
  permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}
layer {{ name: "{f}_loc_flat" type: "Flatten" bottom: "{f}_loc_perm" top: "{f}_loc_flat" }}
layer {{ name: "{f}_conf" type: "Convolution" bottom: "{f}_norm" top: "{f}_conf"
  convolution_param {{ num_output: {NUM_CLASSES * p} kernel_size: 3 pad: 1 }} }}
layer {{ name: "{f}_conf_perm" type: "Permute" bottom: "{f}_conf" top: "{f}_conf_perm"
  permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}
layer {{ name: "{f}_conf_flat" type: "Flatten" bottom: "{f}_conf_perm" top: "{f}_conf_flat" }}
layer {{ name: "{f}_priorbox" type: "PriorBox" bottom: "{f}_norm" bottom: "data"
  top: "{f}_priorbox" prior_box_param {{ {pb} }} }}
""" for f, p, pb in (
    ("conv1", 4, "min_size: 8 max_size: 16 aspect_ratio: 2 flip: true clip: false "
                 "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2"),
    ("conv2", 6, "min_size: 16 max_size: 28 aspect_ratio: 2 aspect_ratio: 3 flip: true "
                 "clip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 "
                 "step: 5 offset: 0.5"),
)) + f"""
layer {{ name: "mbox_loc" type: "Concat" bottom: "conv1_loc_flat" bottom: "conv2_loc_flat"
  top: "mbox_loc" concat_param {{ axis: 1 }} }}
layer {{ name: "mbox_conf" type: "Concat" bottom: "conv1_conf_flat" bottom: "conv2_conf_flat"
  top: "mbox_conf" concat_param {{ axis: 1 }} }}
layer {{ name: "mbox_priorbox" type: "Concat" bottom: "conv1_priorbox"
  bottom: "conv2_priorbox" top: "mbox_priorbox" concat_param {{ axis: 2 }} }}
layer {{ name: "mbox_conf_reshape" type: "Reshape" bottom: "mbox_conf"
  top: "mbox_conf_reshape" reshape_param {{ shape {{ dim: 0 dim: -1 dim: {NUM_CLASSES} }} }} }}
layer {{ name: "mbox_conf_softmax" type: "Softmax" bottom: "mbox_conf_reshape"
  top: "mbox_conf_softmax" softmax_param {{ axis: 2 }} }}
layer {{ name: "mbox_conf_flatten" type: "Flatten" bottom: "mbox_conf_softmax"
  top: "mbox_conf_flatten" }}
layer {{ name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc"
  bottom: "mbox_conf_flatten" bottom: "mbox_priorbox" top: "detection_out"
  detection_output_param {{ num_classes: {NUM_CLASSES} share_location: true
    background_label_id: 0 nms_param {{ nms_threshold: 0.45 top_k: 40 }}
    code_type: CENTER_SIZE keep_top_k: 30 confidence_threshold: 0.3 }} }}
"""


def write_ssd(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The prototxt above and a caffemodel with random weights (written with caffe_pb2)."""
    proto = tmp / "tiny_ssd.prototxt"
    proto.write_text(SSD_PROTOTXT)
    rs = np.random.RandomState(5)
    shapes = {"conv1": [(6, 3, 3, 3), (6,)], "conv2": [(6, 6, 3, 3), (6,)],
              "conv1_norm": [(6,)], "conv2_norm": [(1,)]}  # cv2 cannot read a 0-axis blob
    for f, p in (("conv1", 4), ("conv2", 6)):
        shapes[f"{f}_loc"] = [(4 * p, 6, 3, 3), (4 * p,)]
        shapes[f"{f}_conf"] = [(NUM_CLASSES * p, 6, 3, 3), (NUM_CLASSES * p,)]
    param = caffe_pb2.NetParameter(name="tiny_ssd")
    for name, blob_shapes in shapes.items():
        layer = param.layer.add(name=name)
        for shape in blob_shapes:
            if name.endswith("_norm"):
                data = rs.uniform(1, 3, shape).astype(np.float32)
            elif name.endswith("_conf") and len(shape) == 4:
                data = rs.randn(*shape).astype(np.float32) * 0.15
            else:
                data = rs.randn(*shape).astype(np.float32) * 0.2
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend(np.asarray(data).reshape(-1).tolist())
    model = tmp / "tiny_ssd.caffemodel"
    model.write_bytes(param.SerializeToString())
    return proto, model


def test_tiny_ssd_matches_opencv_dnn(tmp_path) -> None:
    proto, model = write_ssd(tmp_path)
    image = np.random.RandomState(9).uniform(-1, 1, (2, 3, 32, 40)).astype(np.float32)
    ours = forward(load_net(proto, model), data=image)

    cv_net = cv2.dnn.readNetFromCaffe(str(proto), str(model))
    cv_net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv_net.enableFusion(False)
    cv_net.setInput(image)
    names = ["conv1_norm", "conv2_norm", "conv1_loc_perm", "conv2_conf_perm", "conv1_priorbox",
             "conv2_priorbox", "mbox_priorbox", "mbox_loc", "mbox_conf_flatten",
             "detection_out"]
    theirs = dict(zip(names, cv_net.forward(names)))
    for name in names[:-1]:
        assert_blob_close(name, ours[name], theirs[name].reshape(ours[name].shape))
    det, ref = ours["detection_out"], theirs["detection_out"]
    assert det.shape == ref.shape == (1, 1, 60, 7), "keep_top_k 30 should bind in both images"
    assert len(set(det[0, 0, :, 1].tolist())) > 1, "the case should detect several classes"
    # Caffe lists each image's detections by label (a std::map), each label's by descending
    # score; OpenCV lists them by descending score after keep_top_k. Same rows, so put
    # OpenCV's in Caffe's order and compare ours as it is.
    rows = ref[0, 0]
    ref_in_caffe_order = rows[np.lexsort((-rows[:, 2], rows[:, 1], rows[:, 0]))]
    assert_blob_close("detection_out", det[0, 0], ref_in_caffe_order)


# ---- registry --------------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", ["Permute", "Normalize", "PriorBox", "DetectionOutput"])
def test_ssd_converters_are_documented(type_name) -> None:
    spec = lookup(type_name)
    assert spec is not None and spec.family == "ssd"
    assert "weiliu89/caffe" in (spec.convert.__doc__ or "")
