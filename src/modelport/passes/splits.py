"""Caffe's implicit Split layers (util/insert_splits.cpp), the one implementation.

When one top feeds several bottoms (or also carries an explicit non-zero loss_weight, which
counts as one more use), Caffe inserts a Split layer `{blob}_{producer}_{top index}_split`
after the producer whose tops are named `{blob}_{producer layer}_{top index}_split_{k}`; each
consumer's bottom is renamed to the next split top, and a loss weight moves to split top 0.
The split tops hold the blob's value as produced (before any later in-place layer); pycaffe's
`net.blobs` (and so the golden dumps) include them, and Caffe's net.save() writes the Split
layers.

`split_tops` gives only the names (for the live module's blob aliases); `insert_splits` gives
the layer list Caffe runs and saves (for the caffemodel writer's Caffe layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelport.errors import LayerError
from modelport.ir import Layer, Net
from modelport.schema import caffe_pb2

TopRef = tuple[int, int]  # (layer index, top index)


def split_blob_name(layer_name: str, blob_name: str, top_index: int, split_index: int) -> str:
    """Caffe's name of split top `split_index` of a layer's top `top_index` (SplitBlobName)."""
    return f"{blob_name}_{layer_name}_{top_index}_split_{split_index}"


@dataclass
class _Uses:
    """Who reads each produced top: the source of every bottom and the use counts."""

    source_of: dict[tuple[int, int], TopRef] = field(default_factory=dict)  # (layer, bottom)
    count: dict[TopRef, int] = field(default_factory=dict)
    loss: dict[TopRef, float] = field(default_factory=dict)


def _count_uses(net: Net, strict: bool) -> _Uses:
    """Caffe's first pass of InsertSplits. `strict`: a bottom no earlier layer produces is an
    error (else it is ignored)."""
    uses = _Uses()
    last_top: dict[str, TopRef] = {}
    for i, layer in enumerate(net.layers):
        for j, b in enumerate(layer.bottoms):
            if b not in last_top:
                if strict:
                    raise LayerError(layer.name, layer.type,
                                     f"bottom blob '{b}' is not produced by any earlier layer")
                continue
            uses.source_of[(i, j)] = last_top[b]
            uses.count[last_top[b]] = uses.count.get(last_top[b], 0) + 1
        for j, t in enumerate(layer.tops):
            last_top[t] = (i, j)
        for j in range(min(len(layer.param.loss_weight), len(layer.tops))):
            idx = last_top[layer.tops[j]]
            uses.loss[idx] = layer.param.loss_weight[j]
            if uses.loss[idx]:
                uses.count[idx] = uses.count.get(idx, 0) + 1
    return uses


def split_tops_by_index(net: Net) -> dict[TopRef, list[str]]:
    """Map (producer layer index, top index) -> the split top names Caffe creates for it (by
    index: Caffe allows two layers with one name)."""
    result: dict[TopRef, list[str]] = {}
    for (i, j), count in _count_uses(net, strict=False).count.items():
        if count > 1:
            layer = net.layers[i]
            result[(i, j)] = [
                split_blob_name(layer.name, layer.tops[j], j, k) for k in range(count)
            ]
    return result


def split_tops(net: Net) -> dict[tuple[str, int], list[str]]:
    """Map (producer layer name, top index) -> the split top names Caffe creates for it."""
    return {(net.layers[i].name, j): names
            for (i, j), names in split_tops_by_index(net).items()}


def insert_splits(net: Net) -> Net:
    """The layer list Caffe itself runs and saves: `net` with its implicit Split layers."""
    uses = _count_uses(net, strict=True)
    used: dict[TopRef, int] = {}
    layers: list[Layer] = []
    for i, layer in enumerate(net.layers):
        lp = caffe_pb2.LayerParameter()
        lp.CopyFrom(layer.param)
        for j, b in enumerate(layer.bottoms):
            src = uses.source_of[(i, j)]
            if uses.count.get(src, 0) > 1:
                k = used.get(src, 0)
                used[src] = k + 1
                lp.bottom[j] = split_blob_name(net.layers[src[0]].name, b, src[1], k)
        splits: list[Layer] = []
        for j, t in enumerate(layer.tops):
            n = uses.count.get((i, j), 0)
            if n <= 1:
                continue
            sp = caffe_pb2.LayerParameter(name=f"{t}_{layer.name}_{j}_split", type="Split")
            sp.bottom.append(t)
            weight = uses.loss.get((i, j), 0.0)
            for k in range(n):
                sp.top.append(split_blob_name(layer.name, t, j, k))
                if weight:
                    sp.loss_weight.append(weight if k == 0 else 0.0)
            if weight:
                lp.ClearField("loss_weight")
                used[(i, j)] = used.get((i, j), 0) + 1
            splits.append(Layer(sp.name, sp.type, tuple(sp.bottom), tuple(sp.top), sp))
        layers.append(Layer(layer.name, layer.type, tuple(lp.bottom), tuple(lp.top), lp,
                            layer.blobs))
        layers.extend(splits)
    return Net(net.name, tuple(layers), net.source, net.phase, net.notes)
