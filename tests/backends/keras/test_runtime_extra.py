"""The Keras layers of backends/keras/runtime_extra.py against modelport's PyTorch modules.

Each reference is the module modelport's converter builds from a tiny prototxt (and random
blobs); those modules are proven against real Caffe goldens. The Keras layer runs on the torch
backend (tests/conftest.py sets KERAS_BACKEND=torch) on NHWC (4-D) / NDHWC (5-D) inputs, with
its parameters taken from the converted module, and must agree within the project tolerance.
Each tricky type has a case that the obvious wrong implementation fails (Log base 10 read as e,
MVN's eps added to the variance, ArgMax ties to the lower index, PriorBox without flip/clip,
Deconvolution's pad not cut from both ends).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import torch  # noqa: E402

from modelport.backends.keras import runtime_extra as rx  # noqa: E402
from modelport.backends.torch_module import build_module  # noqa: E402
from modelport.formats.caffe.caffemodel import StoredLayer  # noqa: E402
from modelport.ir import Blob  # noqa: E402
from modelport.layers.base import CaffeModule  # noqa: E402
from modelport.pipeline import attach_weights, parse_net  # noqa: E402
from modelport.verify.tolerance import Tolerance  # noqa: E402

F32 = np.float32
TOL = Tolerance()
SHAPE = (2, 3, 7, 9)


def to_keras(x: np.ndarray) -> np.ndarray:
    """Caffe's NCHW / NCDHW as Keras's channels-last; other ranks unchanged."""
    if x.ndim in (4, 5):
        return np.moveaxis(x, 1, -1)
    return x


def from_keras(y: np.ndarray) -> np.ndarray:
    if y.ndim in (4, 5):
        return np.moveaxis(y, -1, 1)
    return y


def caffe_run(layer: str, bottoms: dict[str, np.ndarray], weights: list[np.ndarray] | None = None,
              ntops: int = 1) -> tuple[list[np.ndarray], CaffeModule]:
    """Run one Caffe layer `L` (bottoms in the given order, tops y0..) through modelport's
    converter; returns its tops and its module."""
    text = ""
    for name, x in bottoms.items():
        dims = " ".join(f"dim: {d}" for d in x.shape)
        text += (f'layer {{ name: "{name}" type: "Input" top: "{name}" '
                 f'input_param {{ shape {{ {dims} }} }} }}\n')
    bottom_text = " ".join(f'bottom: "{n}"' for n in bottoms)
    top_text = " ".join(f'top: "y{i}"' for i in range(ntops))
    text += f'layer {{ name: "L" {bottom_text} {top_text} {layer} }}'
    net = parse_net(text)
    if weights is not None:
        net = attach_weights(net, [StoredLayer("L", "", tuple(Blob(w) for w in weights))])
    module = build_module(net)
    with torch.no_grad():
        blobs = module.forward_blobs(**{k: torch.from_numpy(v) for k, v in bottoms.items()})
    return [blobs[f"y{i}"].numpy() for i in range(ntops)], module.layer_module("L")


def keras_run(layer: keras.layers.Layer, *inputs: np.ndarray,
              weights: list[np.ndarray] | None = None) -> np.ndarray:
    """Run a Keras layer eagerly on Keras-layout inputs, return a numpy array."""
    args = [keras.ops.convert_to_tensor(x) for x in inputs]
    if weights is not None:
        layer.build(tuple(inputs[0].shape))
        layer.set_weights(weights)
    out = layer(args if len(args) > 1 else args[0])
    return np.asarray(keras.ops.convert_to_numpy(out))


def assert_close(ours: np.ndarray, ref: np.ndarray, exact: bool = False) -> None:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    allowed = 0.0 if exact else TOL.allowed(ref)
    both_nan = np.isnan(ours) & np.isnan(ref)
    diff = np.where(both_nan, 0.0, np.abs(ours.astype(np.float64) - ref))
    assert np.isnan(ours).sum() == both_nan.sum() == np.isnan(ref).sum()
    assert float(diff.max(initial=0.0)) <= allowed, (float(diff.max()), allowed)


def data(shape: tuple[int, ...] = SHAPE, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    x = (np.random.RandomState(seed).randn(*shape) * scale).astype(F32)
    x.flat[:4] = [0.0, -0.0, 0.5, -0.5]
    return x


def same(layer_text: str, keras_layer: keras.layers.Layer, x: np.ndarray,
         weights: list[np.ndarray] | None = None, keras_weights: list[np.ndarray] | None = None,
         exact: bool = False) -> np.ndarray:
    (ref,), _ = caffe_run(layer_text, {"x": x}, weights)
    ours = from_keras(keras_run(keras_layer, to_keras(x), weights=keras_weights))
    assert_close(ours, ref, exact)
    return ref


# ---- element-wise ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [SHAPE, (4, 5), (2, 5, 7), (2, 3, 4, 6, 5)])
def test_prelu_per_channel_any_rank(shape) -> None:
    x = data(shape)
    slope = np.random.RandomState(1).uniform(0.05, 0.3, size=shape[1]).astype(F32)
    channel_axis = -1 if len(shape) in (4, 5) else 1
    same('type: "PReLU"', rx.CaffePReLU(False, channel_axis), x, [slope], [slope])


def test_prelu_shared() -> None:
    x = data()
    slope = np.array(0.2, F32)  # Caffe's shared slope blob has shape (); Keras's weight (1,)
    same('type: "PReLU" prelu_param { channel_shared: true }', rx.CaffePReLU(True, -1), x,
         [slope], [slope.reshape(1)])


def test_prelu_slope_is_per_channel_on_the_channels_last_axis() -> None:
    """Slopes applied along the wrong axis (Caffe's axis 1 of the NHWC tensor) must differ."""
    x = data((2, 3, 3, 5))
    slope = F32([0.05, 0.2, 0.3])
    (ref,), _ = caffe_run('type: "PReLU"', {"x": x}, [slope])
    wrong = from_keras(keras_run(rx.CaffePReLU(False, 1), to_keras(x),
                                 weights=[F32([0.05, 0.2, 0.3])]))
    assert np.abs(wrong - ref).max() > 0.1


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_elu(alpha) -> None:
    same(f'type: "ELU" elu_param {{ alpha: {alpha} }}', rx.CaffeELU(alpha), data())


def test_absval_and_threshold_at_equality() -> None:
    x = data()
    same('type: "AbsVal"', rx.CaffeAbsVal(), x, exact=True)
    x.flat[5] = 0.5
    same('type: "Threshold" threshold_param { threshold: 0.5 }', rx.CaffeThreshold(0.5), x,
         exact=True)


def test_bnll_large_magnitudes_and_gradient() -> None:
    x = data(scale=40.0)
    x.flat[6:10] = [100.0, -100.0, 89.0, -89.0]
    same('type: "BNLL"', rx.CaffeBNLL(), x)
    # The gradient stays finite where exp(|x|) overflows (fine-tuning through BNLL).
    t = torch.tensor(to_keras(x), requires_grad=True)
    rx.CaffeBNLL()(t).sum().backward()
    assert t.grad is not None and bool(torch.isfinite(t.grad).all())


@pytest.mark.parametrize("power,scale,shift", [(2.0, 0.5, 1.0), (0.5, 1.0, 4.0),
                                               (1.0, -2.0, 0.3), (3.0, 0.0, 2.0),
                                               (0.0, 1.0, 5.0), (1.0, 1.0, 0.0)])
def test_power(power, scale, shift) -> None:
    text = f'type: "Power" power_param {{ power: {power} scale: {scale} shift: {shift} }}'
    _, module = caffe_run(text, {"x": data()})
    layer = rx.CaffePower(module.power, module.scale, module.shift, module.constant)
    same(text, layer, data())


@pytest.mark.parametrize("base,scale,shift", [(-1, 1, 0), (2, 0.5, 1), (10, -0.2, 0.5),
                                              (0.5, 1, -1)])
def test_exp(base, scale, shift) -> None:
    text = f'type: "Exp" exp_param {{ base: {base} scale: {scale} shift: {shift} }}'
    x = data(scale=1.5)
    _, module = caffe_run(text, {"x": x})
    same(text, rx.CaffeExp(module.inner_scale, module.outer_scale), x)


@pytest.mark.parametrize("base,scale,shift", [(-1, 1, 0), (10, 1, 0), (2, 0.5, 4), (3, -1, 5)])
def test_log(base, scale, shift) -> None:
    text = f'type: "Log" log_param {{ base: {base} scale: {scale} shift: {shift} }}'
    x = np.abs(data()) + F32(0.1)  # some of the shifted inputs go negative: NaN as in Caffe
    _, module = caffe_run(text, {"x": x})
    same(text, rx.CaffeLog(module.scale, module.shift, module.base_scale), x)


def test_log_base_10_is_not_natural_log() -> None:
    x = np.abs(data()) + F32(0.1)
    (ref,), _ = caffe_run('type: "Log" log_param { base: 10 }', {"x": x})
    natural = from_keras(keras_run(rx.CaffeLog(1.0, 0.0, 1.0), to_keras(x)))
    assert np.abs(natural - ref).max() > 0.5


def test_clip_nan_and_inverted_bounds() -> None:
    x = data()
    x.flat[7] = np.nan
    same('type: "Clip" clip_param { min: -1 max: 2 }', rx.CaffeClip(-1.0, 2.0), x, exact=True)
    same('type: "Clip" clip_param { min: 1 max: -1 }', rx.CaffeClip(1.0, -1.0), x, exact=True)


@pytest.mark.parametrize("beta", [1.0, 0.7])
def test_swish(beta) -> None:
    same(f'type: "Swish" swish_param {{ beta: {beta} }}', rx.CaffeSwish(beta), data())


# ---- MVN / Normalize -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [SHAPE, (3, 4), (2, 5, 6)])
@pytest.mark.parametrize("normalize_variance,across", [(True, False), (False, False),
                                                       (True, True), (False, True)])
def test_mvn(shape, normalize_variance, across) -> None:
    text = (f'type: "MVN" mvn_param {{ normalize_variance: {str(normalize_variance).lower()} '
            f'across_channels: {str(across).lower()} }}')
    x = data(shape)
    rank = len(shape)
    if rank == 4:
        axes = [1, 2, 3] if across else [1, 2]
    else:
        axes = list(range(1, rank)) if across else list(range(2, rank))
    same(text, rx.CaffeMVN(axes, normalize_variance, 1e-9), x)


def test_mvn_eps_goes_on_the_std() -> None:
    """With a large eps and a small spread, eps on the std and eps on the variance differ."""
    x = (np.random.RandomState(3).randn(*SHAPE) * 0.05).astype(F32)
    text = 'type: "MVN" mvn_param { eps: 0.01 }'
    ref = same(text, rx.CaffeMVN([1, 2], True, 0.01), x)
    xk = to_keras(x)
    centred = xk - xk.mean(axis=(1, 2), keepdims=True)
    on_variance = centred / np.sqrt((centred**2).mean(axis=(1, 2), keepdims=True) + 0.01)
    assert np.abs(from_keras(on_variance) - ref).max() > 0.1


@pytest.mark.parametrize("across_spatial,channel_shared", [(True, True), (False, False),
                                                           (True, False), (False, True)])
def test_normalize(across_spatial, channel_shared) -> None:
    x = data((2, 4, 5, 3))
    scale = np.random.RandomState(2).uniform(1, 20, size=1 if channel_shared else 4).astype(F32)
    stored = scale.reshape(()) if channel_shared else scale
    text = (f'type: "Normalize" norm_param {{ across_spatial: {str(across_spatial).lower()} '
            f'channel_shared: {str(channel_shared).lower()} eps: 1e-6 }}')
    same(text, rx.CaffeNormalize(across_spatial, channel_shared, 1e-6, -1), x, [stored], [scale])


# ---- Embed / Tile / Reduction / ArgMax -------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_embed(bias) -> None:
    rs = np.random.RandomState(4)
    x = rs.randint(0, 7, size=(3, 5)).astype(F32) + F32(0.75)  # truncated, not rounded
    table = rs.randn(7, 4).astype(F32)
    blobs = [table] + ([rs.randn(4).astype(F32)] if bias else [])
    text = (f'type: "Embed" embed_param {{ input_dim: 7 num_output: 4 '
            f'bias_term: {str(bias).lower()} }}')
    same(text, rx.CaffeEmbed(7, 4, bias), x, blobs, blobs, exact=True)


@pytest.mark.parametrize("axis,keras_axis", [(1, 3), (2, 1), (3, 2), (0, 0)])
def test_tile(axis, keras_axis) -> None:
    same(f'type: "Tile" tile_param {{ axis: {axis} tiles: 3 }}', rx.CaffeTile(keras_axis, 3),
         data(), exact=True)


NCHW_FROM_NHWC = [0, 3, 1, 2]


@pytest.mark.parametrize("op", ["SUM", "ASUM", "SUMSQ", "MEAN"])
@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_reduction(op, axis) -> None:
    text = f'type: "Reduction" reduction_param {{ operation: {op} axis: {axis} coeff: -0.5 }}'
    x = data()
    _, module = caffe_run(text, {"x": x})
    (ref,), _ = caffe_run(text, {"x": x})
    layer = rx.CaffeReduction(op, axis, module.coeff, to_caffe=NCHW_FROM_NHWC)
    ours = keras_run(layer, to_keras(x))  # the top has fewer than 4 axes: Caffe order
    assert_close(ours, ref)


def argmax_case(text: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    (ref,), module = caffe_run(text, {"x": x})
    layer = rx.CaffeArgMax(module.top_k, module.out_max_val, module.axis, module.out_ndim,
                           to_caffe=NCHW_FROM_NHWC if x.ndim == 4 else None,
                           to_keras=[0, 2, 3, 1] if ref.ndim == 4 else None)
    return from_keras(keras_run(layer, to_keras(x))), ref


@pytest.mark.parametrize("param", ["", "top_k: 3", "top_k: 2 out_max_val: true",
                                   "axis: 1", "axis: 1 top_k: 2", "axis: 3 top_k: 2 "
                                   "out_max_val: true", "axis: -2 top_k: 4"])
def test_argmax(param) -> None:
    x = data()
    ours, ref = argmax_case(f'type: "ArgMax" argmax_param {{ {param} }}', x)
    assert_close(ours, ref, exact=True)


def test_argmax_ties_go_to_the_higher_index() -> None:
    x = np.round(data((2, 3, 4, 2), scale=1.0)).astype(F32)  # many equal values
    x[0] = 1.0  # every value equal in sample 0
    for param in ("top_k: 3", "axis: 1 top_k: 2", "top_k: 2 out_max_val: true"):
        ours, ref = argmax_case(f'type: "ArgMax" argmax_param {{ {param} }}', x)
        assert_close(ours, ref, exact=True)
    assert ref[0, 0, :, 0].tolist() == [23.0, 22.0]  # not 0, 1 (the lower-index tie break)


def test_argmax_on_2d_and_3d() -> None:
    for shape, param in (((3, 10), "top_k: 2"), ((2, 4, 6), "axis: 2 top_k: 3"),
                         ((2, 4, 6), "out_max_val: true")):
        ours, ref = argmax_case(f'type: "ArgMax" argmax_param {{ {param} }}', data(shape))
        assert_close(ours, ref, exact=True)


# ---- Crop / Permute --------------------------------------------------------------------------


def test_crop_offsets_in_keras_axes() -> None:
    x = data((2, 3, 8, 9))
    ref_blob = np.zeros((2, 3, 4, 5), F32)
    (ref,), _ = caffe_run('type: "Crop" crop_param { axis: 2 offset: 1 offset: 2 }',
                          {"x": x, "r": ref_blob})
    # NHWC: H is axis 1, W is axis 2; batch and channels kept whole.
    layer = rx.CaffeCrop(begin=[0, 1, 2, 0], size=[-1, 4, 5, -1])
    ours = from_keras(keras_run(layer, to_keras(x), to_keras(ref_blob)))
    assert_close(ours, ref, exact=True)
    (ref1,), _ = caffe_run('type: "Crop" crop_param { axis: 1 offset: 0 offset: 3 offset: 1 }',
                           {"x": x, "r": np.zeros((2, 2, 5, 6), F32)})
    layer = rx.CaffeCrop(begin=[0, 3, 1, 0], size=[-1, 5, 6, 2])
    ours = from_keras(keras_run(layer, to_keras(x), np.zeros((2, 5, 6, 2), F32)))
    assert_close(ours, ref1, exact=True)


def test_permute_composed_with_layouts() -> None:
    x = data((2, 3, 4, 5))
    (ref,), _ = caffe_run('type: "Permute" permute_param { order: 0 order: 2 order: 3 '
                          'order: 1 }', {"x": x})
    # NHWC in, NHWC out: y_caffe = x_caffe.permute(0,2,3,1) (N,H,W,C); its NHWC layout is
    # (N, W, C, H) = x_keras (N,H,W,C) axes (0, 2, 3, 1).
    ours = from_keras(keras_run(rx.CaffePermute([0, 2, 3, 1]), to_keras(x)))
    assert_close(ours, ref, exact=True)


# ---- Deconvolution ---------------------------------------------------------------------------


def deconv_weights(cin: int, cout: int, group: int, kernel: tuple[int, ...],
                   bias: bool) -> list[np.ndarray]:
    rs = np.random.RandomState(5)
    w = rs.randn(cin, cout // group, *kernel).astype(F32)
    return [w] + ([rs.randn(cout).astype(F32)] if bias else [])


def keras_deconv_weights(blobs: list[np.ndarray]) -> list[np.ndarray]:
    """Caffe's C x num_output/group x k... as Keras's (*k, num_output/group, C)."""
    w = blobs[0]
    out = [np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))]
    return out + blobs[1:]


@pytest.mark.parametrize("param,shape,cout,group", [
    ("kernel_size: 4 stride: 2 pad: 1", (2, 3, 5, 6), 4, 1),
    ("kernel_size: 3 stride: 2 group: 2", (2, 4, 5, 6), 6, 2),
    ("kernel_h: 3 kernel_w: 2 stride_h: 3 stride_w: 2 pad_h: 1 pad_w: 0", (1, 2, 4, 7), 3, 1),
    ("kernel_size: 2 stride: 3 pad: 0", (2, 3, 4, 5), 2, 1),  # kernel < stride: gaps
    ("kernel_size: 3 stride: 1 pad: 2 dilation: 2", (1, 3, 6, 5), 2, 1),
    ("kernel_size: 3 stride: 2 pad: 1 group: 3 bias_term: false", (2, 3, 5, 4), 3, 3),
])
def test_deconvolution(param, shape, cout, group) -> None:
    x = data(shape, scale=1.0)
    bias = "bias_term: false" not in param
    text = f'type: "Deconvolution" convolution_param {{ num_output: {cout} {param} }}'
    _, module = caffe_run(text, {"x": x}, _fill(text, x, cout, group, bias))
    blobs = [module.weight.detach().numpy()] + ([module.bias.detach().numpy()] if bias else [])
    k = tuple(module.weight.shape[2:])
    layer = rx.CaffeDeconvolution(cout, k, module.stride, module.pad, module.dilation, group,
                                  bias)
    same(text, layer, x, blobs, keras_deconv_weights(blobs))


def _fill(text: str, x: np.ndarray, cout: int, group: int, bias: bool) -> list[np.ndarray]:
    """Random blobs of the shapes the converter expects for this Deconvolution."""

    def get(name: str, default: int) -> int:
        m = re.search(rf"\b{name}: (\d+)", text)
        return int(m.group(1)) if m else default

    ks = get("kernel_size", 0)
    kernel = (get("kernel_h", ks), get("kernel_w", ks))
    return deconv_weights(x.shape[1], cout, group, kernel, bias)


def test_deconvolution_pad_is_cut_from_both_ends() -> None:
    """Cutting 2*pad from the end only (the obvious shortcut) shifts the output by pad."""
    x = data((1, 2, 5, 6), scale=1.0)
    text = ('type: "Deconvolution" convolution_param { num_output: 2 kernel_size: 4 stride: 2 '
            'pad: 1 }')
    blobs = deconv_weights(2, 2, 1, (4, 4), True)
    (ref,), _ = caffe_run(text, {"x": x}, blobs)
    layer = rx.CaffeDeconvolution(2, (4, 4), (2, 2), (0, 0), (1, 1), 1, True)
    uncut = from_keras(keras_run(layer, to_keras(x), weights=keras_deconv_weights(blobs)))
    shortcut = uncut[:, :, : ref.shape[2], : ref.shape[3]]
    assert np.abs(shortcut - ref).max() > 0.1


def test_deconvolution_3d() -> None:
    x = data((1, 2, 3, 4, 5), scale=1.0)
    text = ('type: "Deconvolution" convolution_param { num_output: 3 kernel_size: 2 '
            'kernel_size: 3 kernel_size: 2 stride: 2 pad: 1 }')
    rs = np.random.RandomState(8)
    blobs = [rs.randn(2, 3, 2, 3, 2).astype(F32), rs.randn(3).astype(F32)]
    layer = rx.CaffeDeconvolution(3, (2, 3, 2), (2, 2, 2), (1, 1, 1), (1, 1, 1), 1, True)
    same(text, layer, x, blobs, keras_deconv_weights(blobs))


# ---- grouped N-D Convolution -----------------------------------------------------------------


@pytest.mark.parametrize("param,shape,cout,group", [
    ("kernel_size: 3 kernel_size: 2 kernel_size: 3 pad: 1 stride: 1 stride: 2 stride: 1",
     (2, 4, 4, 6, 5), 6, 2),
    ("kernel_size: 3 pad: 2 stride: 2", (2, 6, 11), 3, 3),
    ("kernel_size: 3 dilation: 2 bias_term: false", (1, 4, 9), 4, 4),
])
def test_group_convolution(param, shape, cout, group) -> None:
    x = data(shape, scale=1.0)
    text = (f'type: "Convolution" convolution_param {{ num_output: {cout} group: {group} '
            f'{param} }}')
    bias = "bias_term: false" not in param
    nsp = len(shape) - 2
    ks = [int(k) for k in re.findall(r"kernel_size: (\d+)", param)]
    kernel = tuple(ks) if len(ks) == nsp else (ks[0],) * nsp
    rs = np.random.RandomState(9)
    blobs = [rs.randn(cout, shape[1] // group, *kernel).astype(F32)]
    blobs += [rs.randn(cout).astype(F32)] if bias else []
    _, module = caffe_run(text, {"x": x}, blobs)
    layer = rx.CaffeGroupConvolution(cout, kernel, module.stride, module.pad, module.dilation,
                                     group, bias)
    w = blobs[0]
    keras_weights = [np.transpose(w, (*range(2, w.ndim), 1, 0))] + blobs[1:]
    (ref,), _ = caffe_run(text, {"x": x}, blobs)
    ours = keras_run(layer, np.moveaxis(x, 1, -1), weights=keras_weights)  # channels last
    assert_close(np.moveaxis(ours, -1, 1), ref)


# ---- PriorBox --------------------------------------------------------------------------------


PRIOR_CASES = [
    "min_size: 30 max_size: 60 aspect_ratio: 2 flip: true clip: true variance: 0.1 "
    "variance: 0.1 variance: 0.2 variance: 0.2",
    "min_size: 30 aspect_ratio: 2 aspect_ratio: 3 flip: false clip: false",
    "min_size: 20 min_size: 50 max_size: 45 max_size: 90 aspect_ratio: 2 flip: true "
    "step: 8 offset: 0.25 img_size: 64",
    "min_size: 16 img_h: 40 img_w: 60 step_h: 7 step_w: 9 clip: true variance: 0.2",
]


@pytest.mark.parametrize("param", PRIOR_CASES)
def test_prior_box(param) -> None:
    fmap, image = data((1, 2, 5, 7)), data((1, 3, 40, 56))
    (ref,), module = caffe_run(f'type: "PriorBox" prior_box_param {{ {param} }}',
                               {"f": fmap, "img": image})
    image_hw = module.img_hw if module.img_hw is not None else (40, 56)
    layer = rx.CaffePriorBox((5, 7), image_hw, module.min_sizes, module.max_sizes,
                             module.aspect_ratios, module.clip, module.variances,
                             module.step_hw, module.offset)
    ours = keras_run(layer, to_keras(fmap), to_keras(image))
    assert_close(ours, ref)


def test_prior_box_flip_and_clip_matter() -> None:
    fmap, image = data((1, 2, 3, 4)), data((1, 3, 30, 40))
    param = "min_size: 25 aspect_ratio: 2 flip: true clip: true"
    (ref,), module = caffe_run(f'type: "PriorBox" prior_box_param {{ {param} }}',
                               {"f": fmap, "img": image})
    assert module.aspect_ratios == [1.0, 2.0, 0.5]
    no_flip = rx.CaffePriorBox((3, 4), (30, 40), [25.0], [], [1.0, 2.0], True, [0.1], None, 0.5)
    assert keras_run(no_flip, to_keras(fmap)).shape != ref.shape
    no_clip = rx.CaffePriorBox((3, 4), (30, 40), [25.0], [], [1.0, 2.0, 0.5], False, [0.1],
                               None, 0.5)
    unclipped = keras_run(no_clip, to_keras(fmap))
    assert unclipped.min() < -0.05 and ref.min() >= 0


# ---- serialisation ---------------------------------------------------------------------------


def test_every_layer_round_trips_its_config() -> None:
    layers = [rx.CaffePReLU(True, 2), rx.CaffeELU(0.5), rx.CaffeAbsVal(), rx.CaffeBNLL(),
              rx.CaffePower(2.0, 0.5, 1.0, None), rx.CaffeExp(0.3, 2.0), rx.CaffeLog(1, 2, 3),
              rx.CaffeThreshold(0.2), rx.CaffeClip(-1, 1), rx.CaffeSwish(0.5),
              rx.CaffeMVN([1, 2], False, 1e-3), rx.CaffeNormalize(False, False, 1e-5, 3),
              rx.CaffeEmbed(5, 3, False, [0, 2, 1]), rx.CaffeTile(2, 4),
              rx.CaffeReduction("ASUM", 2, 0.5, [0, 3, 1, 2], None),
              rx.CaffeArgMax(2, True, 1, 4, [0, 3, 1, 2], [0, 2, 3, 1]),
              rx.CaffeCrop([0, 1, 2, 0], [-1, 3, 4, -1]), rx.CaffePermute([0, 2, 1]),
              rx.CaffeDeconvolution(4, (3, 2), (2, 1), (1, 0), (1, 2), 2, False),
              rx.CaffeGroupConvolution(4, (3, 2, 2), (2, 1, 1), (1, 0, 1), (1, 1, 1), 2, True),
              rx.CaffePriorBox((3, 4), (30, 40), [25.0], [50.0], [1.0, 2.0, 0.5], True,
                               [0.1, 0.1, 0.2, 0.2], [8.0, 9.0], 0.25)]
    assert {type(lay).__name__ for lay in layers} == set(rx.__all__)
    for layer in layers:
        config = layer.get_config()
        name = keras.saving.get_registered_name(type(layer))
        assert name == f"modelport>{type(layer).__name__}"
        again = keras.saving.get_registered_object(name).from_config(config)
        assert again.get_config() == config
