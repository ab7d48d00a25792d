"""A small CaffeNet-like net (conv/relu/IP/softmax) with random weights, for transfer tests."""

from __future__ import annotations

import numpy as np

from modelport.ir import Blob, Net
from modelport.pipeline import parse_net

TINY_PROTOTXT = """
name: "tiny"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 9 dim: 7 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 5 kernel_h: 2 kernel_w: 3 pad_h: 1 pad_w: 0 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "fc6" type: "InnerProduct" bottom: "conv2" top: "fc6"
        inner_product_param { num_output: 6 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7"
        inner_product_param { num_output: 8 } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8"
        inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
"""

# Caffe blob shapes for the layers above (conv1: 4x3x3x2 on 9x7 -> 4x4x6; conv2 pad 1/0 -> 5x5x4).
BLOB_SHAPES = {
    "conv1": [(4, 3, 3, 2), (4,)],
    "conv2": [(5, 4, 2, 3), (5,)],
    "fc6": [(6, 5 * 5 * 4), (6,)],
    "fc7": [(8, 6), (8,)],
    "fc8": [(3, 8), (3,)],
}


def tiny_net(seed: int = 0) -> Net:
    """The tiny net with He-style random weights (numpy RandomState: independent of torch)."""
    rng = np.random.RandomState(seed)
    net = parse_net(TINY_PROTOTXT, "tiny.prototxt")
    layers = []
    for layer in net.layers:
        shapes = BLOB_SHAPES.get(layer.name)
        if shapes:
            w, b = shapes
            fan_in = int(np.prod(w[1:]))
            layer = layer.with_blobs((
                Blob((rng.randn(*w) * np.sqrt(2.0 / fan_in)).astype(np.float32)),
                Blob((rng.randn(*b) * 0.1).astype(np.float32)),
            ))
        layers.append(layer)
    return Net(net.name, tuple(layers), net.source, net.phase, net.notes)


def tiny_input(seed: int = 1) -> np.ndarray:
    return np.random.RandomState(seed).randn(2, 3, 9, 7).astype(np.float32)
