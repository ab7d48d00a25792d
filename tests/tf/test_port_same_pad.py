"""SamePad2d: TF's 'SAME' rule, the odd pixel bottom / right, and clean torch.export tracing.
(Against real TensorFlow: test_port_live.test_same_pad_matches_tf_conv_and_max_pool.)"""

from __future__ import annotations

import math

import pytest
import torch

from modelport.tf import SamePad2d, same_pad_amounts
from modelport.tf.twins import Conv2dSame


def tf_total(n: int, k: int, s: int, d: int) -> int:
    """TF's documented rule (kernel_shape_util.cc): out = ceil(n / s)."""
    return max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)


def test_amounts_follow_tf_rule_with_the_odd_pixel_after() -> None:
    # TF's conv2d docs: n=5, k=3, s=2 pads 1 + 1; n=6 pads 0 before, 1 after
    assert same_pad_amounts(5, 3, 2) == (1, 1)
    assert same_pad_amounts(6, 3, 2) == (0, 1)
    for n in range(1, 20):
        for k in range(1, 7):
            for s in range(1, 5):
                for d in range(1, 4):
                    before, after = same_pad_amounts(n, k, s, d)
                    total = tf_total(n, k, s, d)
                    assert (before, after) == (total // 2, total - total // 2), (n, k, s, d)
                    assert (n + total - (k - 1) * d - 1) // s + 1 == math.ceil(n / s)


def test_pads_bottom_right_on_odd_totals() -> None:
    x = torch.ones(1, 1, 6, 7)
    y = SamePad2d((3, 4), 2)(x)  # H: total 1 -> (0, 1); W: total 3 -> (1, 2)
    assert y.shape == (1, 1, 7, 10)
    assert y[0, 0, -1].abs().sum() == 0 and y[0, 0, 0].abs().sum() > 0
    assert y[0, 0, :, 0].abs().sum() == 0 and y[0, 0, :, -2:].abs().sum() == 0
    assert y[0, 0, :-1, 1:-2].eq(1).all()


@pytest.mark.slow
def test_exports_with_dynamic_height_and_width() -> None:
    """torch.export with symbolic H and W (no guards: any size works), then ONNX."""
    from torch.export import Dim

    m = Conv2dSame(3, 4, (3, 2), stride=2).eval()
    ep = torch.export.export(m, (torch.randn(1, 3, 11, 13),), dynamic_shapes={
        "x": {2: Dim("h", min=4, max=64), 3: Dim("w", min=4, max=64)}})
    for h, w in ((9, 10), (12, 7), (11, 13)):
        x = torch.randn(1, 3, h, w)
        assert torch.allclose(ep.module()(x), m(x), atol=1e-6), (h, w)
    # and on to ONNX, still one graph for every input size, run by ONNX Runtime
    ort = pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime")
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")
    prog = torch.onnx.export(ep, verbose=False, optimize=False)
    sess = ort.InferenceSession(prog.model_proto.SerializeToString())
    name = sess.get_inputs()[0].name
    for h, w in ((9, 10), (12, 7)):
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            want = m(x).numpy()
        got = sess.run(None, {name: x.numpy()})[0]
        assert got.shape == want.shape and abs(got - want).max() < 1e-5, (h, w)
