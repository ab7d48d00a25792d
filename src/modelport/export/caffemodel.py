"""Caffe files as Caffe itself saves them: the `.caffemodel` of `net.save()` and prototxt text.

`write_caffemodel(path, net, caffe_layout=True)` writes the layer list Caffe runs and saves
(util/insert_splits.cpp's implicit Split layers, the pass `modelport.passes.splits`) with the
`param { lr_mult: 0 }` entries BatchNormLayer::LayerSetUp appends (every type whose blobs the
layer registry declares as statistics), so the bytes equal Caffe's own file. Without
`caffe_layout` it is the plain streaming writer of `modelport.formats.caffe.writer`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from modelport.formats.caffe.writer import (
    BlobLike,
    StreamedBlob,
    blob_arrays_with,
    layer_blob_arrays,
    net_parameter,
    net_to_prototxt,
    write_layers,
    write_prototxt,
)
from modelport.ir import Layer, Net
from modelport.layers.registry import STATISTIC, facts
from modelport.passes.splits import insert_splits
from modelport.schema import caffe_pb2

if TYPE_CHECKING:
    from modelport.backends.torch_module import CaffeNet

__all__ = ["StreamedBlob", "caffe_saved_layers", "layer_blob_arrays", "net_parameter",
           "net_to_prototxt", "with_split_layers", "write_caffemodel", "write_prototxt"]


def with_split_layers(net: Net) -> Net:
    """The layer list Caffe itself runs and saves (util/insert_splits.cpp): the pass
    `modelport.passes.splits.insert_splits` (the one implementation of Caffe's rule)."""
    return insert_splits(net)


def _with_batchnorm_fixed_params(net: Net) -> Net:
    """Caffe's BatchNormLayer::LayerSetUp appends `param { lr_mult: 0 }` for each of its three
    blobs that has no ParamSpec (the statistics are not learned), and saves the net that way:
    for every layer whose blobs the registry declares as statistics only."""
    layers = []
    for layer in net.layers:
        roles = facts(layer.type).blob_roles(layer)
        if roles and all(r == STATISTIC for r in roles) and len(layer.param.param) < len(roles):
            lp = caffe_pb2.LayerParameter()
            lp.CopyFrom(layer.param)
            while len(lp.param) < len(roles):
                lp.param.add().lr_mult = 0.0
            layer = Layer(layer.name, layer.type, layer.bottoms, layer.tops, lp, layer.blobs)
        layers.append(layer)
    return Net(net.name, tuple(layers), net.source, net.phase, net.notes)


def caffe_saved_layers(net: Net) -> Net:
    """`net` as Caffe's net.save() writes it: Split layers inserted, BatchNorm's lr_mult 0."""
    return _with_batchnorm_fixed_params(with_split_layers(net))


def write_caffemodel(path: str | os.PathLike[str], source: Net | CaffeNet,
                     blobs: Mapping[str, Sequence[BlobLike]] | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     caffe_layout: bool = False) -> int:
    """`modelport.formats.caffe.writer.write_caffemodel` (same arguments, streamed, atomic;
    returns the file size), with `caffe_layout`: the net as Caffe's own net.save() writes it
    (`caffe_saved_layers`), so the file matches Caffe's byte for byte."""
    net = source if isinstance(source, Net) else source.net
    if caffe_layout:
        net = caffe_saved_layers(net)
    return write_layers(path, net, blob_arrays_with(source, blobs), progress)
