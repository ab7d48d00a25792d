"""Read a Caffe net (prototxt + optional caffemodel) into modelport's IR: reading only.

Steps, each as Caffe does them: parse text -> upgrade V1/legacy inputs -> one IR layer per
layer of the file (every phase: choosing the layers of a NetState is the phase-filter pass,
Caffe's FilterNet, run by `modelport.pipeline`) -> check the layers the net keeps (a type, the
tops: Net::AppendTop) and read the files their parameters name -> copy weights by layer name
(CopyTrainedLayersFrom: source layers that are not in the net are ignored; a layer found in both
must have the same number of blobs). `modelport.pipeline` composes these with the passes
(`load_net`, `parse_net`, `read_net`, `net_from_param`, `attach_weights`).

Layer names need not be unique (Caffe's net.cpp only indexes them; BVLC's mnist_autoencoder has
two layers named `loss`). CopyTrainedLayersFrom copies each stored layer into the FIRST net
layer of its name, so later layers of that name get no weights (they keep their fillers), and
when the weights file itself repeats a name, its last such layer is what the first net layer
ends up holding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from modelport.errors import FormatError, LayerError, WeightError
from modelport.formats.caffe.caffemodel import StoredLayer
from modelport.formats.caffe.layer_files import read_layer_files
from modelport.formats.caffe.upgrade import upgrade_net
from modelport.ir import Layer, Net
from modelport.schema import caffe_pb2


@contextmanager
def blamed_on_unknown_field(unknown_field_error: str | None) -> Iterator[None]:
    """A structural FormatError in a net that also had unknown fields is most likely caused by
    them (a misspelt `name`, say): inside this block it becomes the unknown field's error, with
    its line and column."""
    try:
        yield
    except FormatError:
        if unknown_field_error:
            raise FormatError(unknown_field_error) from None
        raise


def net_ir(param: caffe_pb2.NetParameter, source: str,
           unknown_field_error: str | None = None) -> Net:
    """Upgrade a parsed NetParameter into an IR Net of all its layers (every phase, without
    weights; each layer's LayerParameter keeps its include/exclude rules)."""
    upgraded = upgrade_net(param, source)
    if not upgraded.layer:
        raise FormatError(f"{source}: defines no layers. Fix: give a net definition "
                          "(deploy.prototxt / train_val.prototxt), not an empty file or a "
                          "solver.prototxt")
    layers = []
    for lp in upgraded.layer:
        stripped = caffe_pb2.LayerParameter()
        stripped.CopyFrom(lp)
        del stripped.blobs[:]
        layers.append(Layer(lp.name, lp.type, tuple(lp.bottom), tuple(lp.top), stripped))
    notes = (f"unknown-field: {unknown_field_error}",) if unknown_field_error else ()
    return Net(upgraded.name, tuple(layers), source=source, notes=notes)


def check_layers(net: Net) -> Net:
    """What Caffe checks while it builds the layers a net keeps (run after the phase filter):
    every layer has a type, the files its parameters name are read into it (e.g. InfogainLoss's
    matrix: converters do no I/O), and the tops pass Net::AppendTop (`check_tops`)."""
    for layer in net.layers:
        if not layer.type:
            raise FormatError(f"{net.source}: layer '{layer.name}' has no type")
        read_layer_files(layer.param)  # the net's own copy of the LayerParameter
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


def copy_trained_layers(net: Net, stored: list[StoredLayer]) -> tuple[Net, dict[str, int]]:
    """Give net layers the blobs of the stored layers with their names, as Caffe's
    CopyTrainedLayersFrom does: each stored layer is copied into the first net layer of that
    name (so a name repeated in the net gives weights to its first layer only, and a name
    repeated in the file leaves the last stored blobs there). Also returns {layer name:
    position in `stored`} of the layers filled, for the shared-params pass."""
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
    return Net(net.name, tuple(layers), net.source, net.phase, net.notes), filled


def check_blob_count(layer: Layer, expected: int) -> None:
    """Caffe's 'Incompatible number of blobs' check, with a message naming the layer."""
    if layer.blobs and len(layer.blobs) != expected:
        raise WeightError(layer.name, layer.type,
                          f"the weights file has {len(layer.blobs)} blobs for this layer, "
                          f"the net definition needs {expected}",
                          "check that the prototxt matches the caffemodel")
