"""Readers: prototxt (V1/V2, legacy inputs), caffemodel blobs (shape/legacy/double/FP16),
phase rules."""

from __future__ import annotations

import numpy as np
import pytest

from golden_support import CAFFE_CASES
from modelport.errors import FormatError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.blobproto import decode_blob, read_mean
from modelport.formats.caffe.caffemodel import read_caffemodel
from modelport.pipeline import load_net, parse_net


def _blob_bytes(**fields) -> bytes:
    return caffe_pb2.BlobProto(**fields).SerializeToString()


def test_blob_with_shape_and_float_data() -> None:
    values = np.arange(2 * 3 * 4, dtype=np.float32)
    raw = _blob_bytes(shape=caffe_pb2.BlobShape(dim=[2, 3, 4]), data=values.tolist())
    blob = decode_blob(raw, 0, len(raw), "t")
    assert blob.shape == (2, 3, 4) and not blob.legacy_4d
    np.testing.assert_array_equal(blob.data.ravel(), values)


def test_blob_double_data_is_read_as_float32() -> None:
    values = np.linspace(-1, 1, 6)
    raw = _blob_bytes(shape=caffe_pb2.BlobShape(dim=[6]), double_data=values.tolist())
    blob = decode_blob(raw, 0, len(raw), "t")
    assert blob.data.dtype == np.float32
    np.testing.assert_array_equal(blob.data, values.astype(np.float32))


def test_blob_fp16_raw_data_as_opencv_writes_it() -> None:
    values = np.array([0.5, -2.0, 3.25, 1e-3], dtype=np.float16)
    raw = _blob_bytes(shape=caffe_pb2.BlobShape(dim=[2, 2]), raw_data_type=caffe_pb2.FLOAT16,
                      raw_data=values.tobytes())
    blob = decode_blob(raw, 0, len(raw), "t")
    np.testing.assert_array_equal(blob.data, values.astype(np.float32).reshape(2, 2))


def test_blob_legacy_dims_and_scalar() -> None:
    raw = _blob_bytes(num=1, channels=1, height=2, width=3, data=[1, 2, 3, 4, 5, 6])
    blob = decode_blob(raw, 0, len(raw), "t")
    assert blob.shape == (1, 1, 2, 3) and blob.legacy_4d
    scalar = _blob_bytes(data=[0.25])  # Caffe writes no shape for a 0-axis blob
    blob = decode_blob(scalar, 0, len(scalar), "t")
    assert blob.shape == () and float(blob.data) == 0.25


def test_blob_count_mismatch_is_format_error() -> None:
    raw = _blob_bytes(shape=caffe_pb2.BlobShape(dim=[2, 3]), data=[1.0, 2.0])
    with pytest.raises(FormatError, match="needs 6 values"):
        decode_blob(raw, 0, len(raw), "t")


def test_v1_prototxt_is_upgraded_with_lr_and_decay_mults() -> None:
    net = load_net(CAFFE_CASES / "legacy_v1" / "net.prototxt")
    first = net.layers[0]
    assert (first.name, first.type, first.tops) == ("input", "Input", ("data",))
    assert net.input_shapes() == {"data": (2, 3, 12, 12)}
    conv = net.layer("conv1")
    assert conv.type == "Convolution"
    assert [(p.lr_mult, p.decay_mult) for p in conv.param.param] == [(1, 1), (2, 0)]


def test_v1_caffemodel_layers_and_legacy_blob_dims() -> None:
    weights = CAFFE_CASES / "legacy_v1" / "weights.caffemodel"
    stored = {s.name: s for s in read_caffemodel(str(weights))}
    assert stored["conv1"].type == "Convolution"
    assert stored["ip1"].blobs[0].shape == (1, 1, 5, 144) and stored["ip1"].blobs[0].legacy_4d


PHASED = """
name: "phased"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "train_only" type: "ReLU" bottom: "data" top: "a" include { phase: TRAIN } }
layer { name: "not_in_test" type: "ReLU" bottom: "data" top: "b" exclude { phase: TEST } }
layer { name: "exclude_train" type: "ReLU" bottom: "data" top: "c" exclude { phase: TRAIN } }
layer { name: "staged" type: "ReLU" bottom: "data" top: "d" include { stage: "deploy" } }
layer { name: "leveled" type: "ReLU" bottom: "data" top: "e" include { min_level: 1 } }
layer { name: "not_staged" type: "ReLU" bottom: "data" top: "f" include { not_stage: "deploy" } }
"""


@pytest.mark.parametrize(
    ("phase", "level", "stages", "expected"),
    [
        ("test", 0, (), ["data", "exclude_train", "not_staged"]),
        ("train", 0, (), ["data", "train_only", "not_in_test", "not_staged"]),
        ("test", 1, ("deploy",), ["data", "exclude_train", "staged", "leveled"]),
    ],
)
def test_phase_filter_matches_caffe_filternet(phase, level, stages, expected) -> None:
    net = parse_net(PHASED, phase=phase, level=level, stages=stages)
    assert [layer.name for layer in net.layers] == expected


def test_include_and_exclude_together_is_rejected() -> None:
    text = PHASED + 'layer { name: "both" type: "ReLU" bottom: "data" top: "g" ' \
        "include { phase: TEST } exclude { phase: TRAIN } }\n"
    with pytest.raises(FormatError, match="both include and exclude"):
        parse_net(text)


def test_syntax_error_gives_line_and_column() -> None:
    with pytest.raises(FormatError, match=r"<prototxt>:4:1: .*Expected string"):
        parse_net('name: "x"\nlayer {\n  name: "a" type: \n}\n')


def test_mean_binaryproto_matches_pycaffe_blobproto_to_array() -> None:
    case = CAFFE_CASES / "mean_binaryproto"
    np.testing.assert_array_equal(read_mean(case / "mean.binaryproto"),
                                  np.load(case / "expected.npy"))
    np.testing.assert_array_equal(read_mean(case / "mean_legacy.binaryproto"),
                                  np.load(case / "expected_legacy.npy"))


def test_mean_from_non_blob_file_is_format_error(tmp_path) -> None:
    bad = tmp_path / "bad.binaryproto"
    bad.write_bytes(b"\xff\xff\xff\xff\xff")
    with pytest.raises(FormatError):
        read_mean(bad)


def test_misspelt_field_is_reported_with_its_position() -> None:
    with pytest.raises(FormatError, match=r"<prototxt>:3:3: .*no field named \"nme\""):
        parse_net('name: "x"\nlayer {\n  nme: "a"\n}\n')
