"""Load a Caffe net into modelport's IR: the reader (formats/caffe), then the passes.

Caffe's Net::Init reads the NetParameter, upgrades it, keeps the layers of the requested
NetState (FilterNet) and builds those layers; CopyTrainedLayersFrom then copies the weights by
layer name into blobs that layers sharing a `param { name }` hold once. Here the reader
(`formats/caffe/net_reader`) returns IR for every layer, the phase-filter pass
(`passes/phase_filter`) keeps the state's layers, the reader's checks run on those, and the
shared-params pass (`passes/shared_params`) gives sharing layers the values Caffe's shared blob
ends with. A structural FormatError in a net with unknown fields is reported as the unknown
field (`blamed_on_unknown_field`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from modelport.formats.caffe.caffemodel import StoredLayer, read_caffemodel
from modelport.formats.caffe.net_reader import (
    blamed_on_unknown_field,
    check_layers,
    copy_trained_layers,
    net_ir,
)
from modelport.formats.caffe.prototxt import parse_text, read_net_text
from modelport.ir import Net
from modelport.passes.phase_filter import filter_phase, make_state
from modelport.passes.shared_params import share_params
from modelport.schema import caffe_pb2

__all__ = ["attach_weights", "load_net", "net_from_param", "parse_net", "read_net"]


def net_from_param(param: caffe_pb2.NetParameter, source: str, phase: str | int = "test",
                   level: int = 0, stages: Iterable[str] = (),
                   unknown_field_error: str | None = None) -> Net:
    """Upgrade and phase-filter a parsed NetParameter into an IR Net (without weights)."""
    with blamed_on_unknown_field(unknown_field_error):
        net = net_ir(param, source, unknown_field_error)
        return check_layers(filter_phase(net, make_state(phase, level, stages)))


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
    """The net with the stored layers' blobs copied in by name, as CopyTrainedLayersFrom does
    (`net_reader.copy_trained_layers`: the first net layer of a name gets them), and layers
    sharing a named param holding the values Caffe's shared blob ends with
    (`passes/shared_params`)."""
    filled_net, filled = copy_trained_layers(net, stored)
    return share_params(filled_net, filled)


def load_net(prototxt: str | os.PathLike[str], caffemodel: str | os.PathLike[str] | None = None,
             phase: str | int = "test", level: int = 0, stages: Iterable[str] = (),
             progress: Callable[[int, int], None] | None = None) -> Net:
    """Read prototxt (+ caffemodel weights) into an IR Net for the given phase."""
    net = read_net(prototxt, phase, level, stages)
    if caffemodel is None:
        return net
    stored = read_caffemodel(os.fspath(caffemodel), progress=progress)
    return attach_weights(net, stored)
