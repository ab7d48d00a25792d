"""Our caffe.proto: generated module is up to date, and key field numbers match Caffe 1.0's."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from modelport.formats.caffe import caffe_pb2

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_generated_pb2_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_proto.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_field_numbers_that_binary_caffemodels_depend_on() -> None:
    # Field numbers are what a binary file stores; these are Caffe 1.0's (caffe.proto).
    layer = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert {n: layer[n].number for n in ("name", "type", "bottom", "top", "blobs", "param")} == {
        "name": 1, "type": 2, "bottom": 3, "top": 4, "blobs": 7, "param": 6}
    assert layer["convolution_param"].number == 106
    assert layer["batch_norm_param"].number == 139
    assert layer["prior_box_param"].number == 203  # SSD fork
    blob = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name
    assert (blob["data"].number, blob["shape"].number, blob["double_data"].number) == (5, 7, 8)
    net = caffe_pb2.NetParameter.DESCRIPTOR.fields_by_name
    assert (net["layer"].number, net["layers"].number) == (100, 2)
    v1 = caffe_pb2.V1LayerParameter.DESCRIPTOR.fields_by_name
    assert (v1["name"].number, v1["type"].number, v1["blobs"].number) == (4, 5, 6)


def test_schema_defaults_are_caffes() -> None:
    assert caffe_pb2.SoftmaxParameter().axis == 1
    assert caffe_pb2.LRNParameter().local_size == 5
    assert abs(caffe_pb2.BatchNormParameter().eps - 1e-5) < 1e-12
    assert caffe_pb2.PoolingParameter().round_mode == caffe_pb2.PoolingParameter.CEIL
    assert caffe_pb2.ConvolutionParameter().bias_term is True
    assert caffe_pb2.LossParameter().normalization == caffe_pb2.LossParameter.VALID
