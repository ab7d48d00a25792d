"""Shared parameters as Caffe loads them: `param { name: "w" }` in several layers is one blob.

Caffe (net.cpp, Net::AppendParam) makes a blob whose ParamSpec name was seen before share the
data of its owner (Blob::ShareData); Net::CopyTrainedLayersFrom then writes each stored layer
of the caffemodel, in the file's order, into its net layer's blobs, that is into the shared
memory. So every layer sharing a param ends with the values of the LAST stored layer (in file
order) that has that param, and a sharing layer the caffemodel has no blobs for gets them too
(BVLC's siamese: weights trained without the `_p` twins still fill them).

`share_params` gives every sharing layer those values in the IR, so that modules built from it
(convert, verify, the solver's nets) hold what Caffe's net holds. A sharing layer the file has
no blobs for is filled only when all of its blobs are shared (otherwise its fillers or the
missing-weights error apply, as for any layer without stored blobs).
"""

from __future__ import annotations

from collections.abc import Mapping

from modelport.ir import Blob, Layer, Net


def _names(layer: Layer) -> list[str]:
    return [spec.name for spec in layer.param.param]


def share_params(net: Net, written: Mapping[str, int] | None = None) -> Net:
    """`net` with Caffe's shared-param values. `written`: {layer name: position in the
    caffemodel} of the layers whose blobs were just copied from one file (the later position
    wins); None: every layer with blobs, in net order."""
    named = [layer for layer in net.layers if any(_names(layer))]
    counts: dict[str, int] = {}
    for layer in named:
        for name in _names(layer):
            if name:
                counts[name] = counts.get(name, 0) + 1
    if not any(c > 1 for c in counts.values()):
        return net
    values: dict[str, tuple[int, Blob]] = {}
    for index, layer in enumerate(net.layers):
        if not layer.blobs:
            continue
        if written is not None and layer.name not in written:
            continue
        position = written[layer.name] if written is not None else index
        for j, name in enumerate(_names(layer)):
            if name and counts.get(name, 0) > 1 and j < len(layer.blobs):
                if name not in values or values[name][0] <= position:
                    values[name] = (position, layer.blobs[j])
    if not values:
        return net
    # how many blobs a layer has when every one of them is a named param (a twin without
    # stored blobs is filled only then, with as many blobs as such a stored layer has)
    stored_counts = {len(layer.blobs) for layer in named
                     if layer.blobs and len(layer.blobs) == len(_names(layer))}
    layers = []
    for layer in net.layers:
        names = _names(layer)
        if not any(n in values for n in names):
            layers.append(layer)
            continue
        if layer.blobs:
            blobs = list(layer.blobs)
            for j, name in enumerate(names):
                if name in values and j < len(blobs) and \
                        values[name][1].data.size == blobs[j].data.size:
                    blobs[j] = values[name][1]
            layers.append(layer.with_blobs(tuple(blobs)))
        elif names and all(n in values for n in names) and len(names) in stored_counts:
            layers.append(layer.with_blobs(tuple(values[n][1] for n in names)))
        else:
            layers.append(layer)
    return Net(net.name, tuple(layers), net.source, net.phase, net.notes)
