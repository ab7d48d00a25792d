"""The caffemodel/prototxt writer: Caffe's exact bytes, round trips, and OpenCV reads it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from golden_support import assert_blob_close, caffe_cases
from modelport.backends.torch_module import build_module
from modelport.export.caffemodel import (
    net_to_prototxt,
    with_split_layers,
    write_caffemodel,
    write_prototxt,
)
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.caffemodel import read_caffemodel
from modelport.ir import Blob
from modelport.pipeline import attach_weights, parse_net

# Every golden caffemodel Caffe itself saved (net.save()); the legacy cases were written by the
# fixture generator in the pre-2015 layouts on purpose, so they are not Caffe's bytes.
SAVED_BY_CAFFE = [c for c in caffe_cases()
                  if c.caffemodel is not None and c.name not in ("legacy_blob_dims", "legacy_v1")]

TINY = """
name: "tiny"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 5 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 2 kernel_h: 3 kernel_w: 2 stride_h: 2 } }
layer { name: "prelu" type: "PReLU" bottom: "conv" top: "conv"
        prelu_param { channel_shared: true } include { phase: TEST } }
"""


def tiny_net():
    net = parse_net(TINY, "tiny.prototxt")
    from modelport.formats.caffe.caffemodel import StoredLayer

    w = np.arange(2 * 3 * 3 * 2, dtype=np.float32).reshape(2, 3, 3, 2) / 7
    stored = [StoredLayer("conv", "Convolution", (Blob(w), Blob(np.float32([0.5, -1.25])))),
              StoredLayer("prelu", "PReLU", (Blob(np.array(0.25, np.float32)),))]
    return attach_weights(net, stored)


@pytest.mark.parametrize("case", SAVED_BY_CAFFE, ids=[c.name for c in SAVED_BY_CAFFE])
def test_bytes_equal_what_caffe_saved(case, tmp_path) -> None:
    out = tmp_path / "w.caffemodel"
    size = write_caffemodel(out, case.net(), caffe_layout=True)
    ours, caffes = out.read_bytes(), case.caffemodel.read_bytes()
    assert size == len(ours)
    assert ours == caffes


def test_tiny_net_bytes_equal_protobufs_serializer(tmp_path) -> None:
    net = tiny_net()
    out = tmp_path / "tiny.caffemodel"
    write_caffemodel(out, net)
    # The whole message built in memory and serialized by protobuf itself.
    expected = caffe_pb2.NetParameter(name="tiny")
    for layer in net.layers:
        lp = expected.layer.add()
        lp.CopyFrom(layer.param)
        lp.phase = caffe_pb2.TEST
        for b in layer.blobs:
            bp = lp.blobs.add()
            if b.data.ndim:
                bp.shape.dim.extend(b.data.shape)
            bp.data.extend(b.data.reshape(-1).tolist())
    assert out.read_bytes() == expected.SerializeToString()
    # Spot-check the framing by hand: field 1 (name) then field 100 (layer), wire type 2.
    data = out.read_bytes()
    assert data[:6] == b"\x0a\x04tiny"
    assert data[6:8] == b"\xa2\x06"


def test_round_trip_arrays(tmp_path) -> None:
    net = tiny_net()
    out = tmp_path / "tiny.caffemodel"
    calls: list[tuple[int, int]] = []
    size = write_caffemodel(out, net, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (size, size) == (os.path.getsize(out), os.path.getsize(out))
    stored = {s.name: s for s in read_caffemodel(str(out))}
    assert [s for s in stored] == ["data", "conv", "prelu"]
    assert stored["conv"].type == "Convolution"
    for layer in net.layers:
        got = stored[layer.name].blobs
        assert len(got) == len(layer.blobs)
        for a, b in zip(got, layer.blobs):
            assert a.data.shape == b.data.shape
            np.testing.assert_array_equal(a.data, b.data)


def test_module_weights_are_written(tmp_path) -> None:
    case = next(c for c in caffe_cases() if c.name == "conv_basic")
    module = build_module(case.net())
    module.conv.weight.data.mul_(2)
    out = tmp_path / "m.caffemodel"
    write_caffemodel(out, module)
    stored = {s.name: s for s in read_caffemodel(str(out))}
    ref = case.net().layer("conv").blobs
    np.testing.assert_array_equal(stored["conv"].blobs[0].data, ref[0].data * 2)
    np.testing.assert_array_equal(stored["conv"].blobs[1].data, ref[1].data)


def test_prototxt_round_trip(tmp_path) -> None:
    net = tiny_net()
    text = net_to_prototxt(net, input_shapes={"data": (1, 3, 6, 4)})
    again = parse_net(text, "again.prototxt")
    assert [(la.name, la.type, la.bottoms, la.tops) for la in again.layers] == \
        [(la.name, la.type, la.bottoms, la.tops) for la in net.layers]
    assert again.input_shapes() == {"data": (1, 3, 6, 4)}
    assert list(again.layer("conv").param.param) == list(net.layer("conv").param.param)
    path = tmp_path / "p.prototxt"
    write_prototxt(path, net)
    assert path.read_text() == net_to_prototxt(net)


def test_split_layers_follow_caffe_names() -> None:
    case = next(c for c in caffe_cases() if c.name == "concat_slice")
    split = with_split_layers(case.net())
    types = [la.type for la in split.layers]
    assert "Split" in types
    names = {t for la in split.layers for t in la.tops}
    assert set(case.blobs()) <= names  # every blob Caffe dumped exists under Caffe's name


def test_opencv_reads_what_we_write_and_matches_caffe(tmp_path) -> None:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip("this OpenCV has no Caffe importer")
    case = next(c for c in caffe_cases() if c.name == "conv_basic")
    module = build_module(case.net())
    proto, weights = tmp_path / "deploy.prototxt", tmp_path / "w.caffemodel"
    write_prototxt(proto, module)
    write_caffemodel(weights, module)
    cvnet = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    cvnet.setInput(case.inputs()["data"], "data")
    out = cvnet.forward("conv")
    assert_blob_close("conv", out, case.blobs()["conv"])


def test_streamed_blobs_write_the_same_bytes(tmp_path) -> None:
    from modelport.formats.caffe.writer import StreamedBlob

    net = tiny_net()
    w = net.layer("conv").blobs[0].data
    streamed = StreamedBlob(w.shape, lambda: (w.reshape(-1)[:5], w.reshape(-1)[5:]))
    a, b = tmp_path / "a.caffemodel", tmp_path / "b.caffemodel"
    write_caffemodel(a, net)
    write_caffemodel(b, net, blobs={"conv": [streamed, net.layer("conv").blobs[1].data]})
    assert a.read_bytes() == b.read_bytes()
    bad = StreamedBlob((100,), lambda: (np.zeros(99, np.float32),))
    with pytest.raises(ValueError):
        write_caffemodel(tmp_path / "c.caffemodel", net, blobs={"conv": [bad]})
    assert not (tmp_path / "c.caffemodel").exists()


def test_prototxt_of_a_module_declares_its_input_shapes() -> None:
    case = next(c for c in caffe_cases() if c.name == "conv_basic")
    module = build_module(case.net(), {"data": (1, 3, 20, 17)})
    again = parse_net(net_to_prototxt(module), "again.prototxt")
    assert again.input_shapes() == {"data": (1, 3, 20, 17)}
