"""Names of the implicit Split tops Caffe inserts (util/insert_splits.cpp).

When one top feeds several bottoms (or also carries an explicit loss_weight), Caffe inserts a
Split layer after the producer whose tops are named
`{blob}_{producer layer}_{top index}_split_{k}`; they hold the blob's value as produced (before
any later in-place layer). pycaffe's `net.blobs` (and so the golden dumps) include them.
"""

from __future__ import annotations

from collections import defaultdict

from modelport.ir import Net


def split_blob_name(layer_name: str, blob_name: str, top_index: int, split_index: int) -> str:
    return f"{blob_name}_{layer_name}_{top_index}_split_{split_index}"


def split_tops(net: Net) -> dict[tuple[str, int], list[str]]:
    """Map (producer layer name, top index) -> the split top names Caffe creates for it."""
    last_top: dict[str, tuple[int, int]] = {}
    uses: dict[tuple[int, int], int] = defaultdict(int)
    for i, layer in enumerate(net.layers):
        for b in layer.bottoms:
            if b in last_top:
                uses[last_top[b]] += 1
        for j, t in enumerate(layer.tops):
            last_top[t] = (i, j)
        weights = layer.param.loss_weight
        for j in range(min(len(weights), len(layer.tops))):
            if weights[j]:
                uses[last_top[layer.tops[j]]] += 1
    result: dict[tuple[str, int], list[str]] = {}
    for (i, j), count in uses.items():
        if count > 1:
            layer = net.layers[i]
            result[(layer.name, j)] = [
                split_blob_name(layer.name, layer.tops[j], j, k) for k in range(count)
            ]
    return result
