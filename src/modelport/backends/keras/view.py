"""What the Keras export sees of a converted net: its input layers, then every converted layer
in Caffe's order with its torch module and top shapes (from a live `CaffeNet`, or rebuilt from
a conversion folder by modelport.export.keras)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from modelport.errors import ConfigError
from modelport.ir import Layer

Shape = tuple[int, ...]


@dataclass
class NetView:
    """A converted net as layers: `sources` are the input layers (their tops are fed),
    `layers` the converted ones in run order, each with its module and top shapes."""

    name: str
    source: str
    sources: list[tuple[Layer, list[Shape]]]
    layers: list[tuple[Layer, Any, list[Shape]]]
    input_names: list[str]
    output_names: list[str]
    input_shapes: dict[str, Shape] = field(default_factory=dict)

    def forward_tops(self, inputs: Mapping[str, np.ndarray]) -> list[list[np.ndarray]]:
        """Every converted layer's own tops (in-place layers included, each as it produced
        them), float32 numpy, from the torch modules on `inputs` (Caffe layout), in inference
        mode as the Keras model is checked (each module's own mode is restored after)."""
        blobs = {n: torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32))
                 for n in self.input_names}
        result: list[list[np.ndarray]] = []
        modes = [(m, m.training) for _, module, _ in self.layers for m in module.modules()]
        try:
            for m, _ in modes:
                m.training = False
            with torch.no_grad():
                for layer, module, _ in self.layers:
                    out = module(*[blobs[b] for b in layer.bottoms])
                    outs = list(out) if isinstance(out, tuple | list) else [out]
                    for top, t in zip(layer.tops, outs):
                        blobs[top] = t
                    result.append([t.detach().cpu().float().numpy() for t in outs])
        finally:
            for m, mode in modes:
                m.training = mode
        return result


def view_of(module: Any) -> NetView:
    """The NetView of a live CaffeNet (modelport.backends.torch_module). An optimised module
    (modelport.optimize) is refused: its folded layers no longer have their Caffe form."""
    from modelport.backends.torch_module import CaffeNet

    if not isinstance(module, CaffeNet):
        raise ConfigError(f"the Keras export takes a converted net (CaffeNet), not "
                          f"{type(module).__name__}. Fix: pass modelport.caffe.load(...)'s "
                          "module, a prototxt + caffemodel, or a conversion folder")
    shapes = module.blob_shapes
    sources = [(layer, [tuple(shapes[t]) for t in layer.tops]) for layer in module.source_layers]
    layers: list[tuple[Layer, Any, list[Shape]]] = []
    for layer, key in module.run_order:
        sub = module._modules[key]
        if not type(sub).__module__.startswith("modelport.layers"):
            raise ConfigError(f"layer '{layer.name}' (type {layer.type}) is an optimised form "
                              f"({type(sub).__name__}). Fix: export the net without --optimize")
        layers.append((layer, sub, [tuple(shapes[t]) for t in layer.tops]))
    return NetView(module.net.name or "net", module.net.source, sources, layers,
                   list(module.input_names), list(module.output_names),
                   {n: tuple(shapes[n]) for n in module.input_names})


def check_inputs(view: NetView, inputs: Mapping[str, np.ndarray] | None,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """The given inputs (Caffe layout, every input required), or seeded standard normal data
    of each input's declared shape."""
    rs = np.random.RandomState(seed)
    out: dict[str, np.ndarray] = {}
    given = dict(inputs or {})
    extra = sorted(set(given) - set(view.input_names))
    if extra:
        raise ConfigError(f"input(s) {', '.join(extra)} are not inputs of the net; inputs are "
                          f"{', '.join(view.input_names)}")
    for name in view.input_names:
        if name in given:
            arr = np.ascontiguousarray(given[name], dtype=np.float32)
            want = view.input_shapes[name]
            if arr.shape[1:] != tuple(want[1:]):
                raise ConfigError(f"input '{name}' has shape {arr.shape}; the net takes "
                                  f"{tuple(want)} (any batch size). Fix: give N x "
                                  f"{' x '.join(str(d) for d in want[1:])} data")
            out[name] = arr
        else:
            out[name] = rs.standard_normal(view.input_shapes[name]).astype(np.float32)
    return out
