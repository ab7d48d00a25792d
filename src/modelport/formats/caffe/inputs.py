"""The input blobs a Caffe net declares, and their shapes (Input, MemoryData, DummyData)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelport.errors import LayerError

if TYPE_CHECKING:
    from modelport.ir import Net


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
