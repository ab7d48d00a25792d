"""Test helper: write a binary .caffemodel (NetParameter with weight blobs) via caffe_pb2.

Used to give cv2.dnn the weights of golden cases that ship only a weights.recipe.json (the recipe
values are exactly those put into Caffe, see tests/golden/README.md).
"""

from __future__ import annotations

import pathlib

import numpy as np
from google.protobuf import text_format

from golden_support import GoldenCase
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Net


def net_param_with_blobs(prototxt: pathlib.Path,
                         blobs: dict[str, list[np.ndarray]]) -> caffe_pb2.NetParameter:
    """The prototxt's NetParameter with `blobs[layer]` attached (float32, `shape` field)."""
    param = caffe_pb2.NetParameter()
    text_format.Parse(prototxt.read_text(), param)
    for layer in param.layer:
        for array in blobs.get(layer.name, []):
            layer.blobs.add().ParseFromString(_blob_bytes(np.asarray(array, np.float32)))
    return param


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _blob_bytes(array: np.ndarray) -> bytes:
    """A BlobProto's wire bytes: `shape` (field 7) and packed float `data` (field 5). Built by
    hand because filling `data` element by element takes minutes for CaffeNet's 61M floats."""
    shape = caffe_pb2.BlobShape(dim=[int(d) for d in array.shape]).SerializeToString()
    data = array.astype("<f4").tobytes()
    return (b"\x3a" + _varint(len(shape)) + shape + b"\x2a" + _varint(len(data)) + data)


def write_caffemodel(prototxt: pathlib.Path, blobs: dict[str, list[np.ndarray]],
                     out: pathlib.Path) -> pathlib.Path:
    out.write_bytes(net_param_with_blobs(prototxt, blobs).SerializeToString())
    return out


_WRITTEN: dict[str, pathlib.Path] = {}


def golden_caffemodel(case: GoldenCase, tmp: pathlib.Path) -> pathlib.Path:
    """The case's caffemodel: the stored one, or one written from weights.recipe.json (once per
    test session)."""
    if case.caffemodel is not None:
        return case.caffemodel
    if case.name in _WRITTEN and _WRITTEN[case.name].exists():
        return _WRITTEN[case.name]
    blobs = {layer.name: [b.data for b in layer.blobs] for layer in golden_net(case).layers}
    _WRITTEN[case.name] = write_caffemodel(case.prototxt, blobs, tmp / f"{case.name}.caffemodel")
    return _WRITTEN[case.name]


_NETS: dict[str, Net] = {}


def golden_net(case: GoldenCase) -> Net:
    """case.net(), built once per session (CaffeNet's recipe weights take seconds to draw)."""
    if case.name not in _NETS:
        _NETS[case.name] = case.net()
    return _NETS[case.name]


def golden_case(name: str) -> GoldenCase:
    from golden_support import caffe_cases

    for case in caffe_cases():
        if case.name == name:
            return case
    raise KeyError(name)


def convert_or_skip(case: GoldenCase):  # -> CaffeNet
    """The converted golden net; skip (with the reason) while a layer type is still missing."""
    import pytest

    from modelport.backends.torch_module import build_module
    from modelport.errors import UnsupportedLayerError

    try:
        return build_module(golden_net(case))
    except UnsupportedLayerError as exc:
        pytest.skip(f"not convertible yet: {exc}")
