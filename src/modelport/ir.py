"""modelport's in-memory form of a Caffe net: what every reader produces and every backend reads.

A Net is an ordered list of Layers (Caffe's execution order). Each Layer keeps its full
`LayerParameter` message (so parameters are read through the schema, with Caffe's defaults) and
its weight blobs as numpy arrays in Caffe's blob order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from modelport.errors import LayerError
from modelport.schema import caffe_pb2


@dataclass(frozen=True)
class Blob:
    """One learnable blob as stored in a caffemodel.

    `legacy_4d` is true when the file gave only num/channels/height/width: Caffe then accepts it
    for any expected shape that, left-padded with 1s to four axes, has the same dims.
    """

    data: np.ndarray
    legacy_4d: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.data.shape)


@dataclass(frozen=True)
class Layer:
    """One Caffe layer: name, type, connectivity, parameters (proto) and weights."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    param: caffe_pb2.LayerParameter
    blobs: tuple[Blob, ...] = ()

    def with_blobs(self, blobs: tuple[Blob, ...]) -> Layer:
        return replace(self, blobs=blobs)

    @property
    def in_place(self) -> bool:
        """True when a top reuses a bottom's name (Caffe computes such layers in place)."""
        return any(t in self.bottoms for t in self.tops)


@dataclass(frozen=True)
class Net:
    """A whole net after format upgrades (and, from `modelport.pipeline`, phase filtering)."""

    name: str
    layers: tuple[Layer, ...]
    source: str = "the net"
    phase: int = caffe_pb2.TEST
    notes: tuple[str, ...] = field(default=())

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def input_layers(self) -> tuple[Layer, ...]:
        return tuple(lay for lay in self.layers if lay.type in INPUT_LAYER_TYPES)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(top for lay in self.input_layers for top in lay.tops)

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes declared by Input / MemoryData / DummyData layers (Caffe's order)."""
        return declared_input_shapes(self)

    def output_names(self) -> tuple[str, ...]:
        """Blobs produced and never consumed afterwards, as Caffe's net.outputs lists them."""
        # Caffe (Net::Init): a top becomes available when produced and stops being an output as
        # soon as a later layer consumes it; an in-place top is produced again, so it counts.
        available: list[str] = []
        for layer in self.layers:
            for b in layer.bottoms:
                if b in available:
                    available.remove(b)
            for t in layer.tops:
                if t not in available:
                    available.append(t)
        outputs = available
        return tuple(outputs)


# Layer types whose tops are net inputs fed by the caller (Caffe's Input and its relatives).
INPUT_LAYER_TYPES = frozenset({"Input", "MemoryData", "DummyData"})


def declared_input_shapes(net: Net) -> dict[str, tuple[int, ...]]:
    """Map each input top to its declared shape; a top without one maps to ()."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in net.input_layers:
        p = layer.param
        if layer.type == "Input":
            given = [tuple(int(d) for d in s.dim) for s in p.input_param.shape]
        elif layer.type == "MemoryData":
            m = p.memory_data_param
            given = [(m.batch_size, m.channels, m.height, m.width)]
            if len(layer.tops) > 1:  # the label top
                given.append((m.batch_size, 1, 1, 1))
        else:  # DummyData
            d = p.dummy_data_param
            if d.shape:
                given = [tuple(int(x) for x in s.dim) for s in d.shape]
            else:
                given = [
                    (int(n), int(c), int(h), int(w))
                    for n, c, h, w in zip(d.num, d.channels, d.height, d.width)
                ]
        if len(given) not in (0, 1, len(layer.tops)):
            raise LayerError(layer.name, layer.type,
                             f"declares {len(given)} shapes for {len(layer.tops)} tops",
                             "give one shape, or one per top")
        for i, top in enumerate(layer.tops):
            if not given:
                shapes[top] = ()
            else:
                shapes[top] = given[i] if len(given) > 1 else given[0]
    return shapes
