"""What every TensorFlow / Keras weight file reads into: one `WeightSource`.

The readers of this package (`checkpoint` for TF checkpoints, `keras_h5` / `keras_archive` for
Keras files) each return a `WeightSource`; `modelport.tf.port_weights` consumes it without
knowing which file it came from. No torch and no TensorFlow on this floor.

- `variables`: every stored variable, in the file's own order (a checkpoint's `.index` is sorted
  by name; an HDF5 file in Keras's weight order), keyed by its full stored name
  (`InceptionV4/Conv2d_1a_3x3/weights`, `layers/conv2d_1/vars/0`,
  `model_weights/conv1/conv1/kernel:0`).
- `layers`: when the file knows Keras layers (Keras `.h5`, `.keras`, a TF2 object checkpoint),
  the layers that own weights in `model.layers` order, each with its variables in Keras's
  `layer.weights` order; None for a plain name -> tensor checkpoint (TF1 Saver, TF-slim).
- `names_from` says where the layer names came from, so a report can say it: "config.json",
  "h5 layer_names", "object graph", or "positions" when the file keeps no user names (Keras 3
  `.weights.h5` alone) and layers can only be matched by order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["KerasLayer", "TFVariable", "WeightSource"]


@dataclass
class TFVariable:
    """One stored variable: its full name, its value (exact dtype), and, when known, the layer
    that owns it and its role in that layer (`kernel`, `bias`, `gamma`, `beta`, `moving_mean`,
    `moving_variance`, `depthwise_kernel`, `pointwise_kernel`, `embeddings`, `alpha`, ...)."""

    name: str
    value: np.ndarray
    layer: str | None = None
    role: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)


@dataclass
class KerasLayer:
    """A Keras layer that owns weights: its name (the user's name when the file keeps it, else
    the stored one), its class (`Conv2D`, `DepthwiseConv2D`, `SeparableConv2D`,
    `BatchNormalization`, `Dense`, `Conv2DTranspose`, ...; "" when unknown), its Keras config
    (`{}` when unknown) and its variables in `layer.weights` order."""

    name: str
    class_name: str
    config: dict[str, Any]
    variables: list[TFVariable]
    index: int | None = None  # position in model.layers (all layers, weightless ones too)


@dataclass
class WeightSource:
    """Everything read from one TF / Keras weight file (see the module docstring)."""

    path: Path
    # "tf-checkpoint", "tf2-object-checkpoint", "keras2-h5", "keras3-weights-h5", "keras-archive"
    kind: str
    variables: dict[str, TFVariable]
    layers: list[KerasLayer] | None = None
    names_from: str = "names"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.variables)

    @property
    def total_bytes(self) -> int:
        return sum(v.value.nbytes for v in self.variables.values())
