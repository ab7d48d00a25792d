"""Every Caffe type modelport converts is either written to Keras or refused clearly.

Parametrized over modelport's layer registry (`layers/registry.py`): a type registered without a
case here fails the test. Each case is a tiny net converted by modelport with random
parameters. "emit": model_keras.py is generated and the export's self-check (every named layer
against the PyTorch module, the project tolerance) passes on the torch backend. "refuse": the
export raises one UnsupportedLayerError naming the layer and its type with the reason it has no
faithful Keras form (not the generic "no Keras emitter is registered"), on one line. Losses and
Accuracy are refused with the advice to export the deploy net.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

from test_extra_emitters import (  # noqa: E402
    export_check,
    inputs_text,
    layer,
    randomise,
)

from modelport.backends.keras.source import generate_keras_source  # noqa: E402
from modelport.backends.keras.view import view_of  # noqa: E402
from modelport.backends.torch_module import build_module  # noqa: E402
from modelport.errors import UnsupportedLayerError  # noqa: E402
from modelport.layers.registry import layer_types  # noqa: E402
from modelport.pipeline import parse_net  # noqa: E402

M = {"m": (2, 3, 5, 7)}  # a 4-D map (channels-last in Keras)
V = {"v": (2, 6)}  # a 2-D blob (Caffe order)


def on_m(type_: str, param: str = "", ntops: int = 1) -> tuple[str, dict]:
    tops = "y" if ntops == 1 else [f"y{i}" for i in range(ntops)]
    return layer("L", type_, "m", tops, param), M


def loss(type_: str, bottoms: dict[str, tuple[int, ...]], param: str = "") -> tuple[str, dict]:
    return layer("L", type_, list(bottoms), "loss", param), bottoms


def data_layer(type_: str, param: str) -> tuple[str, dict, dict]:
    body = (f'layer {{ name: "d" type: "{type_}" top: "data" top: "label" {param} }}\n'
            + layer("L2", "InnerProduct", "data", "ip", "inner_product_param { num_output: 3 }"))
    return body, {}, {"data": (2, 3, 4, 5), "label": (2,)}


# type -> [(expected, body, shapes, input_shapes for data layers, input arrays)]
CASES: dict[str, list[tuple[str, str, dict, dict | None, dict | None]]] = {}


def case(type_: str, expected: str, body: str, shapes: dict,
         input_shapes: dict | None = None, inputs: dict | None = None) -> None:
    CASES.setdefault(type_, []).append((expected, body, shapes, input_shapes, inputs))


for t, p in [("AbsVal", ""), ("BNLL", ""), ("ELU", ""), ("Sigmoid", ""), ("TanH", ""),
             ("ReLU", "relu_param { negative_slope: 0.1 }"), ("Swish", ""),
             ("Threshold", ""), ("Clip", "clip_param { min: -1 max: 1 }"),
             ("Power", "power_param { power: 2 shift: 1 }"), ("Exp", "exp_param { base: 3 }"),
             ("Log", "log_param { shift: 20 }"), ("PReLU", ""), ("Dropout", ""),
             ("MVN", ""), ("Normalize", ""), ("LRN", "lrn_param { local_size: 3 }"),
             ("Softmax", ""), ("Tile", "tile_param { tiles: 2 }"), ("Reduction",
                                                                  "reduction_param { axis: 1 }"),
             ("ArgMax", "argmax_param { top_k: 2 }"), ("Flatten", ""),
             ("Reshape", "reshape_param { shape { dim: 0 dim: -1 } }"),
             ("Permute", "permute_param { order: 0 order: 3 order: 2 order: 1 }"),
             ("SPP", "spp_param { pyramid_height: 2 }"),
             ("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }"),
             ("Convolution", "convolution_param { num_output: 4 kernel_size: 3 group: 1 }"),
             ("Deconvolution", "convolution_param { num_output: 4 kernel_size: 3 stride: 2 }"),
             ("InnerProduct", "inner_product_param { num_output: 4 }"),
             ("BatchNorm", ""), ("Scale", "scale_param { bias_term: true }"), ("Bias", ""),
             ("Concat", ""), ("Split", "")]:
    case(t, "emit", *on_m(t, p))
case("Eltwise", "emit", layer("L", "Eltwise", ["m", "m2"], "y",
                              "eltwise_param { coeff: 0.5 coeff: -2 }"), {**M, "m2": M["m"]})
case("Slice", "emit", *on_m("Slice", "slice_param { slice_point: 1 }", ntops=2))
case("Split", "emit", *on_m("Split", "", ntops=3))
case("Crop", "emit", layer("L", "Crop", ["m", "r"], "y", "crop_param { offset: 1 }"),
     {**M, "r": (2, 3, 3, 4)})
case("Embed", "emit", layer("L", "Embed", "v", "y", "embed_param { input_dim: 5 "
                            "num_output: 3 }"), V,
     inputs={"v": np.arange(12, dtype=np.float32).reshape(2, 6) % 5 + np.float32(0.5)})
case("PriorBox", "emit", layer("L", "PriorBox", ["m", "img"], "y",
                               "prior_box_param { min_size: 4 aspect_ratio: 2 flip: true }"),
     {**M, "img": (2, 3, 20, 28)})
case("Silence", "emit", layer("L", "Silence", "m", []) + layer("L2", "ReLU", "m", "y"), M)
case("DetectionOutput", "refuse", layer("L", "DetectionOutput", ["loc", "conf", "prior"], "y",
                                        "detection_output_param { num_classes: 2 }"),
     {"loc": (1, 8), "conf": (1, 4), "prior": (1, 2, 8)})
case("BatchNorm", "refuse", layer("L", "BatchNorm", "m", "y",
                                  "batch_norm_param { use_global_stats: false }"), M)
case("Pooling", "refuse", *on_m("Pooling", "pooling_param { kernel_size: 2 stride: 2 }", 2))
case("Reshape", "refuse", *on_m("Reshape", "reshape_param { shape { dim: -1 } }"))
case("Flatten", "refuse", *on_m("Flatten", "flatten_param { axis: 0 }"))
case("InnerProduct", "refuse", *on_m("InnerProduct", "inner_product_param { num_output: 2 "
                                     "axis: 0 }"))
case("Convolution", "refuse", *on_m("Convolution", "convolution_param { num_output: 2 "
                                    "kernel_size: 1 axis: 2 }"))
case("Deconvolution", "refuse", *on_m("Deconvolution", "convolution_param { num_output: 2 "
                                      "kernel_size: 1 axis: 2 }"))
for t, bottoms in [("SoftmaxWithLoss", {"s": (2, 3), "label": (2,)}),
                   ("Accuracy", {"s": (2, 3), "label": (2,)}),
                   ("EuclideanLoss", {"a": (2, 3), "b": (2, 3)}),
                   ("HingeLoss", {"s": (2, 3), "label": (2,)}),
                   ("MultinomialLogisticLoss", {"s": (2, 3), "label": (2,)}),
                   ("SigmoidCrossEntropyLoss", {"a": (2, 3), "b": (2, 3)}),
                   ("InfogainLoss", {"s": (2, 3), "label": (2,), "h": (3, 3)}),
                   ("ContrastiveLoss", {"a": (2, 3), "b": (2, 3), "sim": (2,)})]:
    case(t, "refuse", *loss(t, bottoms))
case("Input", "emit", layer("L", "ReLU", "m", "y"), M)
case("MemoryData", "emit",
     'layer { name: "d" type: "MemoryData" top: "data" top: "label" memory_data_param { '
     'batch_size: 2 channels: 3 height: 4 width: 5 } }\n' + layer("L2", "ReLU", "data", "y"), {})
case("DummyData", "emit",
     'layer { name: "d" type: "DummyData" top: "data" dummy_data_param { shape { dim: 2 dim: 3 '
     'dim: 4 dim: 5 } } }\n' + layer("L2", "ReLU", "data", "y"), {})
for t, p in [("Data", "data_param { source: 'db' batch_size: 2 backend: LMDB }"),
             ("ImageData", "image_data_param { source: 'list.txt' batch_size: 2 }"),
             ("HDF5Data", "hdf5_data_param { source: 'list.txt' batch_size: 2 }"),
             ("WindowData", "window_data_param { source: 'w.txt' batch_size: 2 }")]:
    # Training data layers are fed inputs in a converted module; emit_core writes their tops
    # as keras.Input (a deploy export of a TEST net that still declares them).
    case(t, "emit", *data_layer(t, p))


def all_cases() -> list[tuple[str, int]]:
    return [(t, i) for t in layer_types() for i in range(max(1, len(CASES.get(t, []))))]


@pytest.mark.parametrize("type_,index", all_cases())
def test_every_registered_type_is_emitted_or_refused(type_, index) -> None:
    assert type_ in CASES, f"no Keras export case for the registered type {type_}"
    expected, body, shapes, input_shapes, inputs = CASES[type_][index]
    net = parse_net(inputs_text(shapes) + body)
    assert type_ in {lay.type for lay in net.layers}
    module = randomise(build_module(net, input_shapes=input_shapes, allow_missing_weights=True))
    if expected == "emit":
        generated, diffs = export_check(module, inputs)
        named = [r.layer.name for r in generated.records
                 if r.layer.type == type_ and r.keras_name is not None]
        assert all(n in diffs for n in named)
        return
    with pytest.raises(UnsupportedLayerError) as info:
        generate_keras_source(view_of(module))
    text = str(info.value)
    assert f"layer 'L' (type {type_}): no faithful Keras form" in text
    assert "no Keras emitter is registered" not in text and "\n" not in text
    if type_ in layer_types("train"):
        assert "export the deploy net" in text


def test_the_cases_name_only_registered_types() -> None:
    assert set(CASES) <= set(layer_types()), set(CASES) - set(layer_types())
    assert np.all([len(v) >= 1 for v in CASES.values()])
