"""A layer type's facts live where it is registered: a fork type registered here, at run time,
is counted by inspect, frozen and re-rated by surgery, written to a caffemodel, converted to
model.py + safetensors and folded by the optimiser, with no other change to modelport."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from modelport.backends.torch_module import CaffeNet
from modelport.convert import convert, load_generated
from modelport.errors import LayerError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.writer import write_caffemodel
from modelport.inspect import inspect_net
from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext, Shape
from modelport.layers.registry import (
    BIAS,
    STATISTIC,
    WEIGHT,
    Affine,
    fixed_roles,
    lookup,
    register_layer,
    unregister_layer,
    weight_bias,
    weight_bias_fillers,
)
from modelport.optimize.inference import OptimizeReport, optimize_for_inference
from modelport.pipeline import load_net
from modelport.transfer.surgery import Surgery, blob_count, param_mults

PROTOTXT = """name: "facts"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "gain" type: "TestGain" bottom: "conv" top: "g" }
layer { name: "dense" type: "TestDense" bottom: "g" top: "out"
        inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 0.2 }
                              bias_filler { type: "gaussian" std: 0.1 } } }
"""


class GainModule(CaffeModule):
    """y = x * weight[c] + bias[c] over axis 1 (a test-only fork layer)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.caffe_blob_names = ("weight", "bias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        view = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.reshape(view) + self.bias.reshape(view)

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        return [tuple(bottom_shapes[0])]


class DenseModule(CaffeModule):
    """y = flatten(x, 1) @ weight^T + bias (a test-only fork layer)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.caffe_blob_names = ("weight", "bias") if bias is not None else ("weight",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x.flatten(1), self.weight, self.bias)

    def output_shapes(self, bottom_shapes: Sequence[Shape]) -> list[Shape] | None:
        return [(bottom_shapes[0][0], int(self.weight.shape[0]))]


def _convert_gain(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """y = x * w + b per channel (test only)."""
    channels = ctx.bottom_shapes[0][1]
    ctx.expect_blob_count(2)
    gaussian = caffe_pb2.FillerParameter(type="gaussian", std=0.5, mean=1.0)
    return GainModule(ctx.blob(0, (channels,), gaussian), ctx.blob(1, (channels,), gaussian))


def _gain_affine(module: object, ndim: int) -> Affine | None:
    if not isinstance(module, GainModule):
        return None
    return module.weight.detach().double(), module.bias.detach().double()


def _convert_dense(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """y = flatten(x) W^T + b (test only; reads inner_product_param)."""
    p = layer.param.inner_product_param
    k = math.prod(ctx.bottom_shapes[0][1:])
    ctx.expect_blob_count(2 if p.bias_term else 1)
    weight = ctx.blob(0, (p.num_output, k), p.weight_filler)
    bias = ctx.blob(1, (p.num_output,), p.bias_filler) if p.bias_term else None
    return DenseModule(weight, bias)


def _dense_macs(layer: Layer, module: CaffeModule, bottoms: Sequence[Shape],
                tops: Sequence[Shape]) -> int:
    weight: torch.Tensor = module.get_parameter("weight")
    return int(bottoms[0][0]) * int(weight.numel())


@pytest.fixture()
def fork_types() -> Iterator[None]:
    """TestGain and TestDense registered for the test only (the registry is left as found)."""
    assert lookup("TestGain") is None and lookup("TestDense") is None
    register_layer("TestGain", blobs=fixed_roles(WEIGHT, BIAS),
                   channel_affine=_gain_affine)(_convert_gain)
    register_layer("TestDense", blobs=weight_bias("inner_product_param"),
                   num_output="inner_product_param", macs=_dense_macs,
                   fillers=weight_bias_fillers("inner_product_param"))(_convert_dense)
    try:
        yield
    finally:
        unregister_layer("TestGain")
        unregister_layer("TestDense")


@pytest.fixture()
def files(tmp_path, fork_types) -> tuple[str, str, CaffeNet]:
    """The prototxt and a caffemodel of filler-drawn weights (and the net that drew them)."""
    proto = tmp_path / "facts.prototxt"
    proto.write_text(PROTOTXT)
    torch.manual_seed(3)
    module = CaffeNet(load_net(proto), allow_missing_weights=True)
    model = tmp_path / "facts.caffemodel"
    write_caffemodel(model, module)
    return str(proto), str(model), module


def test_registered_blob_roles_answer_for_a_new_type(fork_types) -> None:
    net_param = caffe_pb2.LayerParameter(name="d", type="TestDense", bottom=["x"], top=["y"])
    dense = Layer("d", "TestDense", ("x",), ("y",), net_param)
    assert blob_count(dense) == 2
    net_param.inner_product_param.bias_term = False
    assert blob_count(Layer("d", "TestDense", ("x",), ("y",), net_param)) == 1
    bn = Layer("bn", "BatchNorm", ("x",), ("x",), caffe_pb2.LayerParameter(type="BatchNorm"))
    assert lookup("BatchNorm").facts.blob_roles(bn) == (STATISTIC,) * 3  # type: ignore[union-attr]


def test_caffe_rng_replay_fills_the_declared_fillers(files) -> None:
    from modelport.train.caffe_replay import _fillers

    proto, _, module = files
    dense = load_net(proto).layer("dense")
    p = dense.param.inner_product_param
    assert _fillers(dense, module.layer_module("dense")) == [("weight", p.weight_filler),
                                                            ("bias", p.bias_filler)]
    with pytest.raises(LayerError, match="--caffe-rng does not know"):
        _fillers(load_net(proto).layer("gain"), module.layer_module("gain"))


def test_caffemodel_round_trip_keeps_the_new_blobs(files) -> None:
    proto, model, module = files
    net = load_net(proto, model)
    stored = {lay.name: [b.data for b in lay.blobs] for lay in net.layers}
    for name in ("gain", "dense"):
        mine = [t.detach().numpy() for t in module.layer_module(name).caffe_blobs()]
        assert len(stored[name]) == len(mine) == 2
        for a, b in zip(stored[name], mine):
            assert a.shape == b.shape and (a == b).all()


def test_inspect_counts_params_and_macs(files) -> None:
    proto, model, _ = files
    info = inspect_net(load_net(proto, model))
    rows = {row.name: row for row in info.layers}
    assert rows["gain"].params == 2 * 4 and rows["gain"].macs == 0
    k = 4 * 3 * 5  # conv top 2x4x3x5
    assert rows["dense"].params == 6 * k + 6
    assert rows["dense"].macs == 2 * 6 * k
    assert rows["dense"].top_shapes == [(2, 6)]


def test_surgery_freezes_and_rates_the_new_types(files) -> None:
    proto, model, _ = files
    s = Surgery.load(proto, model)
    s.freeze(through="gain")
    layers = {lay.name: lay for lay in s.net.layers}
    assert param_mults(layers["gain"]) == [(0.0, 1.0), (0.0, 1.0)]
    s.replace("dense", num_output=5, filler={"type": "gaussian", "std": 0.1})
    s.lr_preset()
    layers = {lay.name: lay for lay in s.net.layers}
    assert param_mults(layers["gain"]) == [(0.0, 1.0), (0.0, 0.0)]  # frozen; its bias decays 0
    assert param_mults(layers["dense"]) == [(10.0, 1.0), (20.0, 0.0)]  # new: 10x weight, 20x bias
    assert layers["dense"].param.inner_product_param.num_output == 5
    assert layers["dense"].blobs[0].data.shape == (5, 60)


def test_convert_writes_model_py_and_safetensors(files, tmp_path) -> None:
    proto, model, module = files
    out = tmp_path / "out"
    convert(proto, model, out)
    state = load_file(str(out / "model.safetensors"))
    for key in ("gain.weight", "gain.bias", "dense.weight", "dense.bias"):
        assert key in state
    assert torch.equal(state["dense.weight"], module.layer_module("dense").weight.detach())
    generated = load_generated(out / "model.py").load()
    x = torch.randn(2, 3, 5, 7)
    with torch.no_grad():
        assert torch.equal(generated(x), module(x))
    layers = {entry["name"]: entry for entry in json.loads(
        (out / "conversion.json").read_text())["layers"]}
    assert layers["dense"]["parameters"] == 6 * 60 + 6


def test_optimize_folds_the_declared_affine_form(files) -> None:
    _, _, module = files
    module.eval()
    report = OptimizeReport()
    fast = optimize_for_inference(module, report=report)
    assert report.folded == {"conv": ["gain"]}
    x = torch.randn(2, 3, 5, 7)
    with torch.no_grad():
        want, got = module(x), fast(x)
    assert (got - want).abs().max().item() <= 1e-4 * max(1.0, want.abs().max().item())
