"""Winograd F(4x4, 3x3) convolutions: the kernel against a float64 direct convolution, and nets
optimised with it forced on against REAL Caffe's golden blobs; traced / exported graphs and
generated source keep the plain convolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from golden_support import assert_blob_close, caffe_cases
from modelport.backends.codegen import generate_source
from modelport.backends.torch_module import build_module
from modelport.optimize import onednn
from modelport.optimize.inference import optimize_for_inference
from modelport.optimize.winograd import WinogradConvolution, transform_weight, winograd_conv3x3

pytestmark = pytest.mark.skipif(not onednn.AVAILABLE, reason="torch built without oneDNN")
CASES = [c for c in caffe_cases() if c.name != "nsfw"]


@pytest.mark.parametrize("n,c,k,h,w,pad", [(1, 3, 5, 4, 4, (1, 1)), (2, 8, 6, 7, 9, (1, 1)),
                                            (2, 5, 4, 11, 6, (0, 2)), (3, 16, 32, 13, 13, (2, 0)),
                                            (1, 64, 48, 3, 3, (1, 1))])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_kernel_matches_a_float64_direct_convolution(n, c, k, h, w, pad, bias,
                                                     channels_last) -> None:
    gen = torch.Generator().manual_seed(n * 1000 + c * 10 + k)
    x = torch.randn(n, c, h, w, generator=gen) * 3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(k, c, 3, 3, generator=gen)
    b = torch.randn(k, generator=gen) if bias else None
    with torch.no_grad():
        got = winograd_conv3x3(x, transform_weight(weight), b, pad)
    want = F.conv2d(x.double(), weight.double(), None if b is None else b.double(), 1, pad)
    assert got.shape == want.shape
    assert_blob_close("conv", got.numpy(), want.numpy())


def _winograd_layers(net) -> list[WinogradConvolution]:
    return [m for m in net.modules() if isinstance(m, WinogradConvolution)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_optimized_net_with_winograd_forced_matches_caffe(case) -> None:
    net = build_module(case.net())
    opt = optimize_for_inference(net, channels_last=True, winograd="always")
    inputs = {k: torch.from_numpy(v) for k, v in case.inputs().items()}
    with torch.no_grad():
        ours = opt.forward_blobs(**inputs)
    ref = case.blobs()
    for name in opt.output_names:
        assert_blob_close(name, ours[name].numpy(), ref[name])
    for name, value in ours.items():
        if name in ref:
            assert_blob_close(name, value.numpy(), ref[name])
    if case.name == "caffenet":  # conv3 (conv4, conv5 are grouped)
        assert len(_winograd_layers(opt)) == 1


def test_traced_and_exported_graphs_and_source_keep_the_plain_convolution(tmp_path) -> None:
    import onnxruntime as ort

    from modelport.export.onnx import export_onnx

    case = next(c for c in CASES if c.name == "caffenet")
    opt = optimize_for_inference(build_module(case.net()), winograd="always")
    x = torch.from_numpy(case.inputs()["data"])
    with torch.no_grad():
        traced = torch.jit.trace(opt, (x,), check_trace=False)
    assert "mkldnn" not in str(traced.inlined_graph)
    model, _ = export_onnx(opt, tmp_path / "c.onnx", inputs={"data": case.inputs()["data"]})
    got = ort.InferenceSession(model.SerializeToString()).run(None, case.inputs())[0]
    assert_blob_close("prob", got, case.blobs()["prob"])
    source = generate_source(opt, "caffenet")
    assert "Winograd" not in source and "mkldnn" not in source


def test_auto_policy_decides_once_per_shape_and_skips_thin_layers() -> None:
    gen = torch.Generator().manual_seed(0)
    from modelport.layers.conv import CaffeConvolution

    def conv(c: int, k: int) -> WinogradConvolution:
        plain = CaffeConvolution(torch.randn(k, c, 3, 3, generator=gen), torch.randn(k),
                                 (1, 1), (1, 1), (1, 1), 1, 1, False)
        return WinogradConvolution(plain, "auto")

    thin, wide = conv(16, 16), conv(128, 128)
    with torch.no_grad():
        for _ in range(2):
            thin(torch.randn(1, 16, 12, 12))
            wide(torch.randn(1, 128, 12, 12))
        wide(torch.randn(2, 128, 12, 12))
    assert thin._faster == {(1, 16, 12, 12): False}
    assert set(wide._faster) == {(1, 128, 12, 12), (2, 128, 12, 12)}
    with torch.no_grad():  # whichever way was chosen, the result is the convolution
        x = torch.randn(1, 128, 12, 12)
        want = F.conv2d(x.double(), wide.weight.double(), wide.bias.double(), 1, 1)
        assert_blob_close("wide", wide(x).numpy(), want.numpy())


def test_only_3x3_stride_1_ungrouped_convolutions_are_eligible() -> None:
    from modelport.layers.conv import CaffeConvolution

    def conv(kernel: int, stride: int, group: int, dilation: int = 1) -> CaffeConvolution:
        w = torch.zeros(4, 4 // group, kernel, kernel)
        return CaffeConvolution(w, None, (stride, stride), (1, 1), (dilation, dilation), group,
                                1, False)

    assert WinogradConvolution.eligible(conv(3, 1, 1))
    assert not WinogradConvolution.eligible(conv(3, 2, 1))
    assert not WinogradConvolution.eligible(conv(5, 1, 1))
    assert not WinogradConvolution.eligible(conv(3, 1, 2))
    assert not WinogradConvolution.eligible(conv(3, 1, 1, dilation=2))
    assert np.isfinite(transform_weight(conv(3, 1, 1).weight).numpy()).all()
