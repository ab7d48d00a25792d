"""Load a Caffe net (prototxt + optional caffemodel) into modelport's IR.

Steps, each as Caffe does them: parse text -> upgrade V1/legacy inputs -> FilterNet for the
requested NetState -> check the tops (Net::AppendTop) -> copy weights by layer name
(CopyTrainedLayersFrom: source layers that are not in the net are ignored; a layer found in both
must have the same number of blobs).

Layer names need not be unique (Caffe's net.cpp only indexes them; BVLC's mnist_autoencoder has
two layers named `loss`). CopyTrainedLayersFrom copies each stored layer into the FIRST net
layer of its name, so later layers of that name get no weights (they keep their fillers), and
when the weights file itself repeats a name, its last such layer is what the first net layer
ends up holding.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from modelport.errors import FormatError, LayerError, WeightError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.caffemodel import StoredLayer, read_caffemodel
from modelport.formats.caffe.layer_files import read_layer_files
from modelport.formats.caffe.prototxt import parse_text, read_net_text
from modelport.formats.caffe.upgrade import upgrade_net
from modelport.ir import Layer, Net
from modelport.passes.phase_filter import filter_net, make_state


def net_from_param(param: caffe_pb2.NetParameter, source: str, phase: str | int = "test",
                   level: int = 0, stages: Iterable[str] = (),
                   unknown_field_error: str | None = None) -> Net:
    """Upgrade and phase-filter a parsed NetParameter into an IR Net (without weights)."""
    try:
        return _net_from_param(param, source, phase, level, stages, unknown_field_error)
    except FormatError:
        # A structural problem in a net that also had unknown fields is most likely caused by
        # them (a misspelt `name`, say): report the unknown field, with its line and column.
        if unknown_field_error:
            raise FormatError(unknown_field_error) from None
        raise


def _net_from_param(param: caffe_pb2.NetParameter, source: str, phase: str | int,
                    level: int, stages: Iterable[str], unknown_field_error: str | None) -> Net:
    upgraded = upgrade_net(param, source)
    if not upgraded.layer:
        raise FormatError(f"{source}: defines no layers. Fix: give a net definition "
                          "(deploy.prototxt / train_val.prototxt), not an empty file or a "
                          "solver.prototxt")
    state = make_state(phase, level, stages)
    filtered = filter_net(upgraded, state)
    layers = []
    for lp in filtered.layer:
        if not lp.type:
            raise FormatError(f"{source}: layer '{lp.name}' has no type")
        stripped = caffe_pb2.LayerParameter()
        stripped.CopyFrom(lp)
        del stripped.blobs[:]
        read_layer_files(stripped)  # e.g. InfogainLoss's matrix: converters do no I/O
        layers.append(Layer(lp.name, lp.type, tuple(lp.bottom), tuple(lp.top), stripped))
    notes = (f"unknown-field: {unknown_field_error}",) if unknown_field_error else ()
    net = Net(filtered.name, tuple(layers), source=source, phase=state.phase, notes=notes)
    check_tops(net)
    return net


def check_tops(net: Net) -> None:
    """Caffe's Net::AppendTop: top i of a layer may reuse a blob only in place, i.e. when it is
    the layer's bottom i; any other top naming an existing blob is refused ("Top blob 't'
    produced by multiple sources"). LayerError naming both layers."""
    producer: dict[str, Layer] = {}
    for layer in net.layers:
        for i, top in enumerate(layer.tops):
            if i < len(layer.bottoms) and layer.bottoms[i] == top:
                continue  # in place
            first = producer.get(top)
            if first is not None:
                raise LayerError(
                    layer.name, layer.type,
                    f"top blob '{top}' is already produced by layer '{first.name}' (type "
                    f"{first.type}); Caffe refuses this (\"Top blob '{top}' produced by multiple "
                    "sources\"): only a layer computing in place (top i named like its bottom "
                    "i) may write an existing blob",
                    "give one of the two tops another name")
            producer[top] = layer


def parse_net(text: str, source: str = "<prototxt>", phase: str | int = "test", level: int = 0,
              stages: Iterable[str] = ()) -> Net:
    """Parse prototxt text (not a path) into an IR Net."""
    parsed = parse_text(text, caffe_pb2.NetParameter(), source)
    msg = parsed.message
    assert isinstance(msg, caffe_pb2.NetParameter)
    return net_from_param(msg, source, phase, level, stages, parsed.unknown_field_error)


def read_net(prototxt: str | os.PathLike[str], phase: str | int = "test", level: int = 0,
             stages: Iterable[str] = ()) -> Net:
    """Read a .prototxt net definition into an IR Net (without weights)."""
    path = os.fspath(prototxt)
    parsed = read_net_text(path)
    msg = parsed.message
    assert isinstance(msg, caffe_pb2.NetParameter)
    return net_from_param(msg, os.path.basename(path), phase, level, stages,
                          parsed.unknown_field_error)


def attach_weights(net: Net, stored: list[StoredLayer]) -> Net:
    """Give net layers the blobs of the stored layers with their names, as Caffe's
    CopyTrainedLayersFrom does: each stored layer is copied into the first net layer of that
    name (so a name repeated in the net gives weights to its first layer only, and a name
    repeated in the file leaves the last stored blobs there). Layers sharing a named param
    then all hold the values Caffe's shared blob ends with (passes/shared_params.py)."""
    from modelport.passes.shared_params import share_params

    by_name: dict[str, StoredLayer] = {}
    position: dict[str, int] = {}
    for i, s in enumerate(stored):
        if s.blobs or s.name not in by_name:
            by_name[s.name] = s
            position[s.name] = i
    layers = []
    filled: dict[str, int] = {}
    for layer in net.layers:
        found = by_name.get(layer.name)
        if found is None or not found.blobs or layer.name in filled:
            layers.append(layer)
            continue
        filled[layer.name] = position[layer.name]
        layers.append(layer.with_blobs(found.blobs))
    return share_params(Net(net.name, tuple(layers), net.source, net.phase, net.notes),
                        filled)


def load_net(prototxt: str | os.PathLike[str], caffemodel: str | os.PathLike[str] | None = None,
             phase: str | int = "test", level: int = 0, stages: Iterable[str] = (),
             progress: Callable[[int, int], None] | None = None) -> Net:
    """Read prototxt (+ caffemodel weights) into an IR Net for the given phase."""
    net = read_net(prototxt, phase, level, stages)
    if caffemodel is None:
        return net
    stored = read_caffemodel(os.fspath(caffemodel), progress=progress)
    return attach_weights(net, stored)


def check_blob_count(layer: Layer, expected: int) -> None:
    """Caffe's 'Incompatible number of blobs' check, with a message naming the layer."""
    if layer.blobs and len(layer.blobs) != expected:
        raise WeightError(layer.name, layer.type,
                          f"the weights file has {len(layer.blobs)} blobs for this layer, "
                          f"the net definition needs {expected}",
                          "check that the prototxt matches the caffemodel")
