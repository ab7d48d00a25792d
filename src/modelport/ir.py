"""modelport's in-memory form of a Caffe net: what every reader produces and every backend reads.

A Net is an ordered list of Layers (Caffe's execution order). Each Layer keeps its full
`LayerParameter` message (so parameters are read through the schema, with Caffe's defaults) and
its weight blobs as numpy arrays in Caffe's blob order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from modelport.formats.caffe import caffe_pb2


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
    """A whole net after format upgrades and phase filtering."""

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
        from modelport.formats.caffe.inputs import declared_input_shapes

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
