"""Input declarations: Input, legacy input fields, MemoryData and DummyData shapes."""

from __future__ import annotations

import numpy as np
import torch

from modelport.backends.torch_module import build_module
from modelport.pipeline import parse_net


def test_memorydata_and_dummydata_tops_are_inputs_with_declared_shapes() -> None:
    text = """
    layer { name: "mem" type: "MemoryData" top: "data" top: "label"
            memory_data_param { batch_size: 2 channels: 3 height: 5 width: 4 } }
    layer { name: "dummy" type: "DummyData" top: "extra"
            dummy_data_param { shape { dim: 2 dim: 3 dim: 5 dim: 4 } } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
            convolution_param { num_output: 2 kernel_size: 1 bias_term: false } }
    """
    net = parse_net(text)
    assert net.input_shapes() == {"data": (2, 3, 5, 4), "label": (2, 1, 1, 1),
                                  "extra": (2, 3, 5, 4)}
    module = build_module(net, allow_missing_weights=True)
    assert module.input_names == ["data", "label", "extra"]
    x = torch.from_numpy(np.ones((2, 3, 5, 4), np.float32))
    out = module(x, torch.zeros(2, 1, 1, 1), x)
    assert out["conv"].shape == (2, 2, 5, 4)


def test_legacy_input_shape_field_becomes_input_layer() -> None:
    text = 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 5 dim: 7 }\n'
    net = parse_net(text)
    assert net.layers[0].type == "Input" and net.input_shapes() == {"data": (1, 3, 5, 7)}
