"""modelport.pipeline: the reader returns every layer, the passes choose and share.

Caffe's Net::Init filters the layers of the NetState (FilterNet) before it creates them, so a
layer the state drops is never checked (a missing type is only an error in a kept layer).
"""

from __future__ import annotations

import pytest

from modelport import pipeline
from modelport.errors import FormatError
from modelport.formats.caffe import net_loader
from modelport.formats.caffe.net_reader import net_ir
from modelport.formats.caffe.prototxt import parse_text
from modelport.schema import caffe_pb2

TEXT = """
name: "phases"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } }
layer { name: "train_only" top: "t" bottom: "data" include { phase: TRAIN } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "r" exclude { phase: TRAIN } }
"""


def _param(text: str) -> caffe_pb2.NetParameter:
    msg = parse_text(text, caffe_pb2.NetParameter(), "phases.prototxt").message
    assert isinstance(msg, caffe_pb2.NetParameter)
    return msg


def test_the_reader_returns_every_phase_and_the_pipeline_filters() -> None:
    read = net_ir(_param(TEXT), "phases.prototxt")
    assert [layer.name for layer in read.layers] == ["data", "train_only", "relu"]
    test = pipeline.parse_net(TEXT, "phases.prototxt", phase="test")
    assert [layer.name for layer in test.layers] == ["data", "relu"]
    assert test.phase == caffe_pb2.TEST


def test_a_kept_layer_without_type_is_an_error_naming_it() -> None:
    with pytest.raises(FormatError, match="layer 'train_only' has no type"):
        pipeline.parse_net(TEXT, "phases.prototxt", phase="train")


def test_the_old_import_path_gives_the_pipeline_functions() -> None:
    for name in ("load_net", "parse_net", "read_net", "net_from_param", "attach_weights"):
        assert getattr(net_loader, name) is getattr(pipeline, name)
