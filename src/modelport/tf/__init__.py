"""TensorFlow / Keras weights into PyTorch: `port_weights`, TF 'SAME' padding, parity.

    from modelport.tf import port_weights, SamePad2d
    report = port_weights("model.keras", twin, sample_input=torch.zeros(1, 3, 32, 32))
    print(report)                        # every variable: target, rule, layout; every leftover

The twin-module pattern: a PyTorch module whose layers mirror the Keras model's, registered in
`model.layers` order, padding with `SamePad2d` (or the `twins`) where Keras says "same":

    Keras                                  PyTorch twin
    Conv2D(f, k, s, padding="same")        SamePad2d(k, s) + nn.Conv2d(c, f, k, s)  (Conv2dSame)
    DepthwiseConv2D(k, depth_multiplier=m) nn.Conv2d(c, c*m, k, groups=c)  (DepthwiseConv2dSame)
    SeparableConv2D(f, k)                  depthwise conv (no bias) + 1x1 conv (SeparableConv2d)
    BatchNormalization()                   nn.BatchNorm2d(c, eps=1e-3)
    Flatten() + Dense(n)                   nn.Flatten() + nn.Linear(h*w*c, n)  (rows re-ordered)
    Conv2DTranspose(f, k, s, "same")       ConvTranspose2dSame(c, f, k, s)  (output_padding=)
    Conv1D / Conv3D, pools, 1-D separable  twins.Conv1dSame / Conv3dSame, Max/AvgPoolNdSame, ...

A Keras config the twin's modules do not share (strides, padding, output_padding, a BatchNorm
axis, ...) is refused by `port_weights` (`settings`) when the file keeps configs.

`read_checkpoint` / `read_checkpoint_source` / `open_weights` are the torch-free readers of
`modelport.formats.tf`, re-exported lazily; `verify_tf` compares a ported module's outputs with
TF's (NHWC `.npy` transposed for you) under the project's tolerance.
"""

from __future__ import annotations

from typing import Any

from modelport.lazy import lazy_attribute
from modelport.tf.port import port_weights
from modelport.tf.report import PortError, PortReport, PortRow
from modelport.tf.same_pad import SamePad1d, SamePad2d, SamePad3d, pad_same, same_pad_amounts

__all__ = ["PortError", "PortReport", "PortRow", "SamePad1d", "SamePad2d", "SamePad3d",
           "open_weights", "pad_same",
           "port_weights", "read_checkpoint", "read_checkpoint_source", "same_pad_amounts",
           "verify_tf"]

_LAZY = {
    "read_checkpoint": "modelport.formats.tf.checkpoint",
    "read_checkpoint_source": "modelport.formats.tf.checkpoint",
    "open_weights": "modelport.formats.tf.open",
    "verify_tf": "modelport.tf.verify_tf",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)
