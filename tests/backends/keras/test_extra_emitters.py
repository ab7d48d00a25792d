"""The emitters of backends/keras/emit_extra.py through the Keras export's own path.

Each net is converted by modelport (random parameters), written as model_keras.py by
`generate_keras_source`, run on the torch backend, and every named Keras layer output is
compared with the PyTorch module's tops by the export's self-check (`check_model`: the project
tolerance, indices exact); the PyTorch modules are the ones proven against real Caffe goldens.
The nets put the types where layouts bite: after a 1-D or 3-D convolution (channels-last 3-D
and 5-D tensors), on 2-D and 3-D blobs in Caffe order, and in an SSD-like head. A planted bug in
an emitted layer must make the self-check name that layer, and every refusal must be an
UnsupportedLayerError naming the layer and saying why.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch  # noqa: E402

from modelport.backends.keras.selfcheck import build_model, check_model, exec_source  # noqa: E402
from modelport.backends.keras.source import GeneratedKeras, generate_keras_source  # noqa: E402
from modelport.backends.keras.view import check_inputs, view_of  # noqa: E402
from modelport.backends.torch_module import CaffeNet, build_module  # noqa: E402
from modelport.errors import ParityError, UnsupportedLayerError  # noqa: E402
from modelport.pipeline import parse_net  # noqa: E402
from modelport.verify.tolerance import Tolerance  # noqa: E402

TOL = Tolerance()


def inputs_text(shapes: dict[str, tuple[int, ...]]) -> str:
    return "".join(f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape {{ '
                   + " ".join(f"dim: {d}" for d in s) + " } } }\n" for n, s in shapes.items())


def randomise(module: CaffeNet, seed: int = 0) -> CaffeNet:
    """Every parameter and buffer random (fillers' constants would hide layout bugs); variances
    positive and BatchNorm's scale factor 1."""
    rs = np.random.RandomState(seed)
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if not t.is_floating_point():
                continue
            if name.endswith("variance"):
                values = rs.uniform(0.5, 2.0, size=t.shape)
            elif name.endswith("scale_factor"):
                values = np.ones(t.shape)
            else:
                values = rs.uniform(0.05, 0.3, size=t.shape) if "prelu" in name else \
                    rs.randn(*t.shape) * 0.5
            t.copy_(torch.from_numpy(values.astype(np.float32)))
    return module


def module_of(body: str, shapes: dict[str, tuple[int, ...]],
              input_shapes: dict[str, tuple[int, ...]] | None = None) -> CaffeNet:
    net = parse_net(inputs_text(shapes) + body)
    return randomise(build_module(net, input_shapes=input_shapes, allow_missing_weights=True))


def export_check(module: CaffeNet, inputs: dict[str, np.ndarray] | None = None,
                 ) -> tuple[GeneratedKeras, dict[str, float]]:
    """generate -> exec -> build -> the self-check; returns the source and per-layer diffs."""
    view = view_of(module)
    generated = generate_keras_source(view)
    model = build_model(exec_source(generated.source, "/nonexistent/model_keras.py"), generated)
    arrays = check_inputs(view, inputs)
    return generated, check_model(view, generated, model, arrays, TOL).layer_diffs


NetCase = tuple[str, dict[str, tuple[int, ...]], dict[str, np.ndarray] | None]


def checked(body: str, shapes: dict[str, tuple[int, ...]],
            inputs: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    generated, diffs = export_check(module_of(body, shapes), inputs)
    names = {r.layer.name for r in generated.records if r.keras_name is not None}
    assert names <= set(diffs), names - set(diffs)  # every named layer was compared
    return diffs


def layer(name: str, type_: str, bottoms: str | list[str], tops: str | list[str],
          param: str = "") -> str:
    bs = [bottoms] if isinstance(bottoms, str) else bottoms
    ts = [tops] if isinstance(tops, str) else tops
    return (f'layer {{ name: "{name}" type: "{type_}" '
            + " ".join(f'bottom: "{b}"' for b in bs) + " "
            + " ".join(f'top: "{t}"' for t in ts) + f" {param} }}\n")


# ---- layouts -----------------------------------------------------------------------------------


ELEMENTWISE = [("prelu", "PReLU", ""),
               ("prelu_s", "PReLU", "prelu_param { channel_shared: true }"),
               ("elu", "ELU", "elu_param { alpha: 0.4 }"), ("abs", "AbsVal", ""),
               ("bnll", "BNLL", ""),
               ("pow", "Power", "power_param { power: 2 scale: 0.5 shift: 1 }"),
               ("exp", "Exp", "exp_param { base: 2 scale: 0.5 shift: 0.25 }"),
               ("thr", "Threshold", "threshold_param { threshold: 0.1 }"),
               ("clip", "Clip", "clip_param { min: -0.5 max: 0.7 }"),
               ("swish", "Swish", "swish_param { beta: 1.5 }")]


def chain(bottom: str, kinds: list[tuple[str, str, str]]) -> str:
    return "".join(layer(n, t, bottom, n, p) for n, t, p in kinds)


def net_conv1d_channels_last_rank_3() -> NetCase:
    """A 1-D convolution's N x L x C output: PReLU's channel axis, MVN's axes, Reduction's and
    ArgMax's Caffe order, Tile's axis, Deconvolution 1-D."""
    body = (layer("conv", "Convolution", "x", "c",
                  "convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 }")
            + chain("c", ELEMENTWISE)
            + layer("mvn", "MVN", "c", "mvn")
            + layer("red", "Reduction", "c", "red", "reduction_param { operation: SUMSQ axis: 2 }")
            + layer("red1", "Reduction", "c", "red1", "reduction_param { operation: ASUM axis: 1 "
                    "coeff: 0.5 }")
            + layer("am", "ArgMax", "c", "am", "argmax_param { top_k: 2 out_max_val: true }")
            + layer("am1", "ArgMax", "c", "am1", "argmax_param { axis: 1 top_k: 3 }")
            + layer("tile", "Tile", "c", "tile", "tile_param { axis: 1 tiles: 2 }")
            + layer("deconv", "Deconvolution", "c", "dc",
                    "convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1 }")
            + layer("perm", "Permute", "c", "perm", "permute_param { order: 0 order: 2 order: 1 }"))
    return body, {"x": (2, 3, 11)}, None


def net_conv3d_channels_last_rank_5() -> NetCase:
    body = (layer("conv", "Convolution", "x", "c", "convolution_param { num_output: 4 "
                  "kernel_size: 3 kernel_size: 2 kernel_size: 3 pad: 1 stride: 1 stride: 2 "
                  "stride: 1 group: 2 }")
            + chain("c", ELEMENTWISE[:3])
            + layer("red", "Reduction", "c", "red", "reduction_param { operation: MEAN axis: 3 }")
            + layer("am", "ArgMax", "c", "am", "argmax_param { axis: 1 }")
            + layer("norm", "Normalize", "c", "norm", "norm_param { across_spatial: false "
                    "channel_shared: false }")
            + layer("deconv", "Deconvolution", "c", "dc", "convolution_param { num_output: 2 "
                    "kernel_size: 2 stride: 2 pad: 0 group: 2 }")
            + layer("tile", "Tile", "c", "tile", "tile_param { axis: 4 tiles: 2 }"))
    return body, {"x": (2, 2, 4, 6, 5)}, None


def net_caffe_order_blobs_and_4d_maps() -> NetCase:
    """2-D and 3-D inputs stay in Caffe order; 4-D inputs are channels-last."""
    body = (chain("v", ELEMENTWISE)
            + layer("mvn2", "MVN", "v", "mvn2", "mvn_param { across_channels: true }")
            + layer("am", "ArgMax", "v", "am", "argmax_param { top_k: 3 }")
            + layer("mvn3", "MVN", "s", "mvn3")
            + layer("red3", "Reduction", "s", "red3", "reduction_param { axis: 1 }")
            + layer("am3", "ArgMax", "s", "am3", "argmax_param { axis: 2 top_k: 2 }")
            + layer("tile3", "Tile", "s", "tile3", "tile_param { axis: -1 tiles: 3 }")
            + layer("mvn4", "MVN", "m", "mvn4", "mvn_param { eps: 0.001 }")
            + layer("red4", "Reduction", "m", "red4", "reduction_param { axis: 3 coeff: 2 }")
            + layer("red0", "Reduction", "m", "red0", "reduction_param { operation: ASUM }")
            + layer("am4", "ArgMax", "m", "am4", "argmax_param { top_k: 4 out_max_val: true }")
            + layer("am0", "ArgMax", "m", "am0", "argmax_param { axis: 0 }")
            + layer("norm", "Normalize", "m", "norm", "norm_param { eps: 0.01 }")
            + layer("perm", "Permute", "m", "perm", "permute_param { order: 0 order: 3 order: 1 "
                    "order: 2 }")
            + layer("perm3", "Permute", "m", "perm3", "permute_param { order: 0 order: 2 }"))
    return body, {"v": (3, 7), "s": (2, 5, 6), "m": (2, 3, 5, 4)}, None


def net_log_and_embed() -> NetCase:
    rs = np.random.RandomState(1)
    body = (layer("log10", "Log", "p", "l10", "log_param { base: 10 }")
            + layer("log_e", "Log", "p", "le", "log_param { scale: 2 shift: 0.5 }")
            + layer("emb", "Embed", "ids", "e", "embed_param { input_dim: 6 num_output: 3 }")
            + layer("emb3", "Embed", "ids3", "e3", "embed_param { input_dim: 6 num_output: 2 "
                    "bias_term: false }"))
    inputs = {"p": rs.uniform(0.1, 3, size=(2, 3, 4, 5)).astype(np.float32),
              "ids": rs.randint(0, 6, size=(2, 5)).astype(np.float32),
              "ids3": rs.randint(0, 6, size=(2, 3, 4)).astype(np.float32)}
    return body, {n: a.shape for n, a in inputs.items()}, inputs


def net_crop_deconv_spp() -> NetCase:
    body = (layer("crop", "Crop", ["big", "ref"], "cr", "crop_param { axis: 2 offset: 1 "
                  "offset: 3 }")
            + layer("crop1", "Crop", ["big", "ref1"], "cr1", "crop_param { axis: 1 offset: 2 }")
            + layer("dc", "Deconvolution", "big", "dc", "convolution_param { num_output: 4 "
                    "kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0 group: 2 "
                    "bias_term: false }")
            + layer("spp", "SPP", "big", "spp", "spp_param { pyramid_height: 3 }")
            + layer("spp1", "SPP", "big", "spp1", "spp_param { pyramid_height: 1 pool: AVE }"))
    return body, {"big": (2, 4, 9, 11), "ref": (2, 4, 5, 6), "ref1": (2, 2, 5, 6)}, None


def net_reshape_explicit_batch() -> NetCase:
    body = (layer("r", "Reshape", "m", "r", "reshape_param { shape { dim: 2 dim: -1 dim: 5 } }")
            + layer("f", "Flatten", "v", "f", "flatten_param { axis: 0 end_axis: 0 }"))
    return body, {"m": (2, 3, 5, 4), "v": (2, 6)}, None


def net_ssd_like_head() -> NetCase:
    """Two feature maps -> Normalize, loc/conf convolutions, Permute + Flatten, Softmax over
    classes, PriorBox per map (flip, clip, max_size, step, variances) and Concat on axis 2:
    everything of SSD up to DetectionOutput."""
    c = 3
    head = ""
    for i, (src, ms, extra) in enumerate([("f1", 8, "max_size: 16 aspect_ratio: 2 flip: true "
                                          "clip: true"),
                                         ("f2", 16, "aspect_ratio: 2 aspect_ratio: 3 flip: true "
                                          "step: 8 offset: 0.25")]):
        p = 4 if i == 0 else 5
        head += (layer(f"loc{i}", "Convolution", src, f"loc{i}",
                       f"convolution_param {{ num_output: {p * 4} kernel_size: 3 pad: 1 }}")
                 + layer(f"loc{i}_perm", "Permute", f"loc{i}", f"loc{i}_perm",
                         "permute_param { order: 0 order: 2 order: 3 order: 1 }")
                 + layer(f"loc{i}_flat", "Flatten", f"loc{i}_perm", f"loc{i}_flat")
                 + layer(f"conf{i}", "Convolution", src, f"conf{i}",
                         f"convolution_param {{ num_output: {p * c} kernel_size: 3 pad: 1 }}")
                 + layer(f"conf{i}_perm", "Permute", f"conf{i}", f"conf{i}_perm",
                         "permute_param { order: 0 order: 2 order: 3 order: 1 }")
                 + layer(f"conf{i}_flat", "Flatten", f"conf{i}_perm", f"conf{i}_flat")
                 + layer(f"prior{i}", "PriorBox", [src, "data"], f"prior{i}",
                         f"prior_box_param {{ min_size: {ms} {extra} variance: 0.1 "
                         "variance: 0.1 variance: 0.2 variance: 0.2 }"))
    body = (layer("conv1", "Convolution", "data", "f1", "convolution_param { num_output: 6 "
                  "kernel_size: 3 pad: 1 stride: 2 }")
            + layer("norm1", "Normalize", "f1", "f1n", "norm_param { across_spatial: false "
                    "channel_shared: false }")
            + layer("pool1", "Pooling", "f1", "f2", "pooling_param { pool: MAX kernel_size: 2 "
                    "stride: 2 }")
            + head.replace('bottom: "f1" top: "loc0"', 'bottom: "f1n" top: "loc0"')
            + layer("loc", "Concat", ["loc0_flat", "loc1_flat"], "loc")
            + layer("conf", "Concat", ["conf0_flat", "conf1_flat"], "conf")
            + layer("conf_r", "Reshape", "conf", "conf_r", f"reshape_param {{ shape {{ dim: 0 "
                    f"dim: -1 dim: {c} }} }}")
            + layer("conf_sm", "Softmax", "conf_r", "conf_sm", "softmax_param { axis: 2 }")
            + layer("conf_out", "Flatten", "conf_sm", "conf_out")
            + layer("priors", "Concat", ["prior0", "prior1"], "priors", "concat_param { axis: 2 }"))
    return body, {"data": (2, 3, 20, 28)}, None


# net -> its builder and layers that must be among the compared ones
NETS: dict[str, tuple[Callable[[], NetCase], set[str]]] = {
    "conv1d": (net_conv1d_channels_last_rank_3,
               {"prelu", "mvn", "red", "am", "am1", "tile", "deconv", "perm"}),
    "conv3d": (net_conv3d_channels_last_rank_5, {"conv", "red", "am", "norm", "deconv"}),
    "caffe_order": (net_caffe_order_blobs_and_4d_maps, {"mvn2", "am3", "red0", "am0", "perm"}),
    "log_embed": (net_log_and_embed, {"log10", "emb", "emb3"}),
    "crop_deconv_spp": (net_crop_deconv_spp, {"crop", "crop1", "dc", "spp", "spp1"}),
    "reshape_batch": (net_reshape_explicit_batch, {"r", "f"}),
    "ssd_head": (net_ssd_like_head, {"prior0", "prior1", "priors", "norm1", "loc0_perm",
                                     "conf_sm"}),
}


@pytest.mark.parametrize("name", list(NETS))
def test_nets_pass_the_self_check(name) -> None:
    builder, must = NETS[name]
    diffs = checked(*builder())
    assert must <= set(diffs), must - set(diffs)


# ---- the self-check can fail -------------------------------------------------------------------


@pytest.mark.parametrize("planted,victim", [
    ("CaffeLog(1.0, 0.0, 0.4342944622039795", "CaffeLog(1.0, 0.0, 1.0"),  # base 10 read as e
    ("CaffeMVN([1, 2], normalize_variance=True, eps=0.5", "CaffeMVN([1, 2], "
     "normalize_variance=True, eps=0.0"),
    ("CaffeArgMax(2, out_max_val=False, axis=None", "CaffeArgMax(2, out_max_val=False, "
     "axis=1"),
])
def test_a_planted_bug_is_named(planted, victim) -> None:
    body = (layer("log10", "Log", "p", "l10", "log_param { base: 10 }")
            + layer("mvn", "MVN", "p", "mvn", "mvn_param { eps: 0.5 }")
            + layer("am", "ArgMax", "p", "am", "argmax_param { top_k: 2 }"))
    x = np.random.RandomState(2).uniform(0.1, 3, size=(2, 3, 4, 5)).astype(np.float32)
    module = module_of(body, {"p": x.shape})
    view = view_of(module)
    generated = generate_keras_source(view)
    assert planted in generated.source
    generated.source = generated.source.replace(planted, victim)
    model = build_model(exec_source(generated.source, "/nonexistent/model_keras.py"), generated)
    with pytest.raises(ParityError) as info:
        check_model(view, generated, model, {"p": x}, TOL)
    name = {"CaffeLog": "log10", "CaffeMVN": "mvn", "CaffeArgMax": "am"}[planted.split("(")[0]]
    assert f"layer '{name}'" in str(info.value)


# ---- refusals ----------------------------------------------------------------------------------


def refusal(body: str, shapes: dict[str, tuple[int, ...]], name: str, type_: str,
            phase_train: bool = False) -> str:
    net = parse_net(inputs_text(shapes) + body, phase="train" if phase_train else "test")
    module = randomise(build_module(net, allow_missing_weights=True))
    with pytest.raises(UnsupportedLayerError) as info:
        generate_keras_source(view_of(module))
    text = str(info.value)
    assert f"layer '{name}' (type {type_}): no faithful Keras form" in text
    assert "\n" not in text
    return text


def test_detection_output_is_refused_with_what_to_do() -> None:
    body = layer("det", "DetectionOutput", ["loc", "conf", "prior"], "det",
                 "detection_output_param { num_classes: 3 nms_param { nms_threshold: 0.45 "
                 "top_k: 10 } keep_top_k: 5 confidence_threshold: 0.01 }")
    text = refusal(body, {"loc": (1, 40), "conf": (1, 30), "prior": (1, 2, 40)}, "det",
                   "DetectionOutput")
    assert "depends on the data" in text and "model.py" in text and "padded" in text


@pytest.mark.parametrize("body,shapes,name,type_,phase_train,why", [
    (layer("bn", "BatchNorm", "m", "bn"), {"m": (2, 3, 4, 5)}, "bn", "BatchNorm", True,
     "use_global_stats"),
    (layer("pool", "Pooling", "m", ["p", "mask"], "pooling_param { pool: MAX kernel_size: 2 "
           "stride: 2 }"), {"m": (2, 3, 4, 6)}, "pool", "Pooling", False, "mask"),
    (layer("conv", "Convolution", "m", "c", "convolution_param { num_output: 2 kernel_size: 1 "
           "axis: 2 }"), {"m": (2, 3, 4, 6, 5)}, "conv", "Convolution", False, "axis 2"),
    (layer("ip", "InnerProduct", "m", "ip", "inner_product_param { num_output: 2 axis: 0 }"),
     {"m": (2, 3, 4, 6)}, "ip", "InnerProduct", False, "axis 0"),
    (layer("r", "Reshape", "m", "r", "reshape_param { shape { dim: 1 dim: -1 } }"),
     {"m": (2, 3, 4, 6)}, "r", "Reshape", False, "batch"),
    (layer("t", "Tile", "m", "t", "tile_param { axis: 0 tiles: 2 }"), {"m": (2, 3, 4, 6)}, "t",
     "Tile", False, "batch"),
    (layer("perm", "Permute", "m", "perm", "permute_param { order: 1 order: 0 }"),
     {"m": (2, 3, 4, 6)}, "perm", "Permute", False, "batch"),
])
def test_refused_forms(body, shapes, name, type_, phase_train, why) -> None:
    assert why in refusal(body, shapes, name, type_, phase_train)
