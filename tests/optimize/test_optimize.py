"""Inference optimisation keeps Caffe's results: optimised nets vs REAL Caffe's golden blobs,
folding really happens where allowed and is refused where an intermediate blob is needed."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from golden_support import assert_blob_close, caffe_cases
from modelport.backends.torch_module import build_module
from modelport.errors import UnsupportedLayerError
from modelport.export.onnx import export_onnx
from modelport.optimize.inference import OptimizeReport, optimize_for_inference
from modelport.pipeline import load_net

CASES = [c for c in caffe_cases() if c.name != "nsfw"]


def convert_or_skip(case):
    try:
        return build_module(case.net())
    except UnsupportedLayerError as exc:
        pytest.skip(f"not convertible yet: {exc}")


def check_surviving_blobs(net, case) -> None:
    inputs = {k: torch.from_numpy(v) for k, v in case.inputs().items()}
    with torch.no_grad():
        ours = net.forward_blobs(**inputs)
    ref = case.blobs()
    for name in net.output_names:
        assert_blob_close(name, ours[name].numpy(), ref[name])
    for name, value in ours.items():  # every blob the optimised net still has is Caffe's
        if name in ref:
            assert_blob_close(name, value.numpy(), ref[name])


def needs_onednn():
    """modelport.optimize.onednn, or skip when this torch build lacks its kernels."""
    from modelport.optimize import onednn

    if not onednn.AVAILABLE:
        pytest.skip("this torch build has no oneDNN kernels")
    return onednn


def opencv_blobs(tmp_path, net, x: torch.Tensor, writers: dict[str, str]) -> dict:
    """Blobs as OpenCV's cv2.dnn (an independent Caffe implementation) computes them from
    tmp_path/net.prototxt and `net`'s weights written as a caffemodel; `writers` maps each
    blob to the last layer writing it (cv2.dnn names outputs by layer)."""
    cv2 = pytest.importorskip("cv2")
    from modelport.formats.caffe.writer import write_caffemodel

    weights = tmp_path / "net.caffemodel"
    write_caffemodel(weights, net)
    cvnet = cv2.dnn.readNetFromCaffe(str(tmp_path / "net.prototxt"), str(weights))
    cvnet.setInput(np.ascontiguousarray(x.numpy()))
    return dict(zip(writers, cvnet.forward(list(writers.values()))))


def random_net(tmp_path, prototxt: str, seed: int):
    """The converted net of `prototxt` with filler-initialised weights (seeded)."""
    proto = tmp_path / "net.prototxt"
    proto.write_text(prototxt)
    torch.manual_seed(seed)
    return build_module(load_net(proto), allow_missing_weights=True)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_optimized_net_matches_caffe(case, channels_last) -> None:
    net = convert_or_skip(case)
    check_surviving_blobs(optimize_for_inference(net, channels_last=channels_last), case)


def test_inplace_chain_fuses_relu_drops_dropout_merges_bn_scale() -> None:
    case = next(c for c in CASES if c.name == "inplace_chain")
    net = convert_or_skip(case)
    report = OptimizeReport()
    opt = optimize_for_inference(net, report=report)
    assert report.fused_relu == {"conv1": "relu1"}
    assert report.dropped == ["drop1"]
    assert report.merged == {"bn1": ["scale1"]}
    assert [layer.name for layer, _ in opt.run_order] == ["conv1", "bn1", "conv2"]
    assert len(net.run_order) == 6  # the original is untouched
    check_surviving_blobs(opt, case)


def test_batchnorm_scale_folds_into_convolution(tmp_path) -> None:
    # conv -> BatchNorm (scale_factor 0.5, eps 1e-3) -> Scale(bias) -> ReLU, weights from a
    # golden case's BN/Scale blobs: the folded net equals the unfolded one (which the golden
    # tests tie to Caffe), and exports to ONNX without BatchNorm-related nodes.
    net = random_net(tmp_path, """
name: "fold"
layer { name: "data" type: "Input" top: "data" input_param {
  shape { dim: 2 dim: 3 dim: 7 dim: 9 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0
  stride_h: 1 stride_w: 2
  weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "bn" batch_norm_param { eps: 0.001 } }
layer { name: "scale" type: "Scale" bottom: "bn" top: "bn" scale_param { bias_term: true
  filler { type: "uniform" min: 0.5 max: 1.5 } bias_filler { type: "gaussian" std: 0.2 } } }
layer { name: "relu" type: "ReLU" bottom: "bn" top: "bn" }
layer { name: "ip" type: "InnerProduct" bottom: "bn" top: "ip"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "power" type: "Power" bottom: "ip" top: "out" power_param { scale: -2 shift: 0.5 } }
""", 0)
    bn = net.layer_module("bn")
    with torch.no_grad():  # Caffe's running sums with a non-trivial scale factor
        bn.mean.copy_(torch.randn(4) * 0.5)
        bn.variance.copy_(torch.rand(4) + 0.5)
        bn.scale_factor.fill_(0.5)
    report = OptimizeReport()
    opt = optimize_for_inference(net, report=report)
    assert report.folded == {"conv": ["bn", "scale"], "ip": ["power"]}
    assert report.fused_relu == {"conv": "relu"}
    x = torch.randn(2, 3, 7, 9)
    with torch.no_grad():
        want, got = net(x), opt(x)
    assert_blob_close("out", got.numpy(), want.numpy())
    model, _ = export_onnx(opt, None, inputs={"data": x.numpy()})
    ops = {n.op_type for n in model.graph.node}
    # Nothing of BatchNorm, Scale or Power is left to compute: it is all in Conv/Gemm weights.
    assert {"Conv", "Relu", "Gemm"} <= ops, ops
    assert not ops & {"Sqrt", "Div", "Sub", "Reciprocal", "Mul", "Pow", "Add",
                      "BatchNormalization"}, ops
    out = ort.InferenceSession(model.SerializeToString()).run(None, {"data": x.numpy()})[0]
    assert_blob_close("out", out, want.numpy())


def test_no_folding_when_the_intermediate_blob_is_needed(tmp_path) -> None:
    net = random_net(tmp_path, """
name: "keep"
layer { name: "data" type: "Input" top: "data" input_param {
  shape { dim: 2 dim: 3 dim: 5 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "bn" }
layer { name: "conv_relu" type: "ReLU" bottom: "conv" top: "conv_relu" }
layer { name: "sum" type: "Eltwise" bottom: "bn" bottom: "conv_relu" top: "sum" }
layer { name: "conv2" type: "Convolution" bottom: "sum" top: "conv2"
  convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "scale2" type: "Scale" bottom: "conv2" top: "scaled" scale_param { bias_term: true } }
""", 1)
    with torch.no_grad():
        net.layer_module("bn").scale_factor.fill_(1.0)
        net.layer_module("bn").variance.fill_(2.0)
    report = OptimizeReport()
    opt = optimize_for_inference(net, report=report)
    # conv's output is read by bn AND conv_relu: no folding, no fusing; conv2's output is read
    # only by scale2 (and is therefore not a net output): folded.
    assert "conv" not in report.folded and "conv" not in report.fused_relu
    assert report.folded == {"conv2": ["scale2"]}
    x = torch.randn(2, 3, 5, 6)
    with torch.no_grad():
        want, got = net.forward_blobs(x), opt.forward_blobs(x)
    for name in ("bn", "conv_relu", "sum", "scaled"):
        assert_blob_close(name, got[name].numpy(), want[name].numpy())


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.parametrize("winograd", [False, "always"], ids=["direct", "winograd"])
def test_optimized_nsfw_matches_caffe(winograd) -> None:
    from modelport.caffe import load
    from modelport.zoo import fetch_nsfw

    case = next(c for c in caffe_cases() if c.name == "nsfw")
    _, caffemodel = fetch_nsfw()
    net = load(case.prototxt, caffemodel)
    report = OptimizeReport()
    opt = optimize_for_inference(net, report=report, channels_last=True, winograd=winograd)
    assert sum(len(v) for v in report.folded.values()) >= 100  # 53 BN + 53 Scale
    check_surviving_blobs(opt, case)


def test_onednn_kernels_run_eagerly_but_trace_export_and_generate_plain_ops() -> None:
    from modelport.backends.codegen import generate_source
    onednn = needs_onednn()
    case = next(c for c in CASES if c.name == "caffenet")
    opt = optimize_for_inference(convert_or_skip(case))
    assert isinstance(opt.layer_module("fc8"), onednn.InferenceInnerProduct)
    conv1 = opt.layer_module("conv1")  # conv1 + relu1: ReLU as the convolution's post-op
    assert isinstance(conv1, onednn.InferenceConvolution) and conv1.relu
    x = torch.from_numpy(case.inputs()["data"])
    with torch.profiler.profile() as prof, torch.no_grad():
        eager = opt(x)
    ops = {e.key for e in prof.key_averages()}
    assert {"mkldnn::_linear_pointwise", "mkldnn::_convolution_pointwise"} <= ops, ops
    assert_blob_close("prob", eager.numpy(), case.blobs()["prob"])
    with torch.no_grad():
        traced = torch.jit.trace(opt, (x,), check_trace=False)
    assert "mkldnn" not in str(traced.inlined_graph)
    assert_blob_close("prob", traced(x).numpy(), case.blobs()["prob"])
    source = generate_source(opt, "caffenet")
    assert "mkldnn" not in source and "FusedReLU(" in source


def test_leaky_relu_after_a_convolution_stays_a_wrapper_around_the_onednn_convolution(
        tmp_path) -> None:
    onednn = needs_onednn()
    net = random_net(tmp_path, """
name: "leaky"
layer { name: "data" type: "Input" top: "data" input_param {
  shape { dim: 2 dim: 3 dim: 9 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 5 kernel_size: 3 pad: 1 group: 1
  weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" relu_param { negative_slope: 0.1 } }
layer { name: "conv2" type: "Convolution" bottom: "conv" top: "out"
  convolution_param { num_output: 4 kernel_size: 2 stride: 2 group: 1
  weight_filler { type: "gaussian" std: 0.5 } } }
""", 3)
    opt = optimize_for_inference(net, channels_last=True)
    wrapper = opt.layer_module("conv")
    assert isinstance(wrapper.inner, onednn.InferenceConvolution) and not wrapper.inner.relu
    x = torch.randn(2, 3, 9, 8)
    ref = opencv_blobs(tmp_path, net, x, {"out": "out"})  # cv2 names this layer by its top
    with torch.no_grad():
        assert_blob_close("out", opt(x).numpy(), ref["out"])


RESIDUAL = """
name: "residual"
layer { name: "data" type: "Input" top: "data" input_param {
  shape { dim: 2 dim: 8 dim: 6 dim: 7 } } }
layer { name: "conv_a" type: "Convolution" bottom: "data" top: "a"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1
  weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu_a" type: "ReLU" bottom: "a" top: "a" }
layer { name: "conv_b" type: "Convolution" bottom: "a" top: "b"
  convolution_param { num_output: 8 kernel_size: 1
  weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn_b" type: "BatchNorm" bottom: "b" top: "b" }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }
layer { name: "relu_sum" type: "ReLU" bottom: "sum" top: "sum" }
layer { name: "conv_c" type: "Convolution" bottom: "sum" top: "c"
  convolution_param { num_output: 8 kernel_size: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "keep" type: "Eltwise" bottom: "c" bottom: "sum" top: "keep" }
layer { name: "tap" type: "ReLU" bottom: "c" top: "tap" }
"""


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_residual_sum_and_relu_become_convolution_post_ops(tmp_path, channels_last) -> None:
    onednn = needs_onednn()
    net = random_net(tmp_path, RESIDUAL, 5)
    with torch.no_grad():
        net.layer_module("bn_b").scale_factor.fill_(1.0)
        net.layer_module("bn_b").variance.uniform_(0.5, 2.0)
    report = OptimizeReport()
    opt = optimize_for_inference(net, channels_last=channels_last, report=report)
    # conv_b (BatchNorm folded) computes a + b and the ReLU; conv_c's output is also read by
    # "tap", so "keep" stays a separate Eltwise.
    assert report.fused_sum == {"conv_b": "sum"}
    assert report.fused_relu["conv_b"] == "relu_sum"
    assert isinstance(opt.layer_module("conv_b"), onednn.InferenceConvolutionSum)
    assert [layer.name for layer, _ in opt.run_order] == ["conv_a", "conv_b", "conv_c", "keep",
                                                           "tap"]
    x = torch.randn(2, 8, 6, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.profiler.profile() as prof, torch.no_grad():
        got = opt.forward_blobs(x)
    want = opencv_blobs(tmp_path, net, x, {"sum": "relu_sum", "keep": "keep", "tap": "tap"})
    for name in ("sum", "keep", "tap"):
        assert_blob_close(name, got[name].numpy(), want[name])
    counts = {e.key: e.count for e in prof.key_averages()}
    assert counts.get("mkldnn::_convolution_pointwise") == 3  # conv_a, conv_b, conv_c
    assert counts.get("aten::add") == 1  # only "keep": conv_b adds inside oneDNN
    with torch.no_grad():  # traced graphs keep the plain ops
        traced = torch.jit.trace(opt, (x,), check_trace=False, strict=False)
    assert "mkldnn" not in str(traced.inlined_graph)
    from modelport.backends.codegen import generate_source
    from modelport.convert import state_dict_for_saving

    namespace: dict = {}
    exec(compile(generate_source(opt, "residual"), "model.py", "exec"), namespace)  # noqa: S102
    generated = namespace["Net"]()
    generated.load_state_dict(state_dict_for_saving(opt), strict=True)
    with torch.no_grad():
        assert_blob_close("keep", generated(x)["keep"].numpy(), want["keep"])


def test_residual_sum_waits_for_the_later_branch(tmp_path) -> None:
    needs_onednn()
    net = random_net(tmp_path, """
name: "order"
layer { name: "data" type: "Input" top: "data" input_param {
  shape { dim: 1 dim: 4 dim: 5 dim: 5 } } }
layer { name: "first" type: "Convolution" bottom: "data" top: "p"
  convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "second" type: "Convolution" bottom: "data" top: "q"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1
  weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "sum" type: "Eltwise" bottom: "p" bottom: "q" top: "out" }
""", 6)
    report = OptimizeReport()
    opt = optimize_for_inference(net, report=report)
    assert report.fused_sum == {"second": "sum"}  # "first" runs before q exists
    x = torch.randn(1, 4, 5, 5)
    ref = opencv_blobs(tmp_path, net, x, {"out": "sum"})
    with torch.no_grad():
        assert_blob_close("out", opt(x).numpy(), ref["out"])


def test_an_optimized_net_that_has_run_can_be_copied_and_saved() -> None:
    # oneDNN's reordered weights are opaque tensors that can be neither copied nor pickled:
    # copies start with an empty cache and rebuild it.
    import copy
    import io

    needs_onednn()
    case = next(c for c in CASES if c.name == "caffenet")
    opt = optimize_for_inference(convert_or_skip(case), winograd="always")
    x = torch.from_numpy(case.inputs()["data"])
    with torch.no_grad():
        opt(x)
        again = copy.deepcopy(opt)(x)
        twice = optimize_for_inference(opt)(x)
    torch.save(opt, io.BytesIO())
    assert_blob_close("prob", again.numpy(), case.blobs()["prob"])
    assert_blob_close("prob", twice.numpy(), case.blobs()["prob"])
