"""modelport: move pretrained models out of Caffe into PyTorch exactly, and prove it.

Public API:
    modelport.caffe.load(prototxt, caffemodel) -> torch.nn.Module
    modelport.caffe.read_mean(path) -> numpy array
    modelport.register_layer("MyType") -> decorator registering a converter
    modelport.verify(net, reference, inputs) -> ParityReport (blob-by-blob parity check)
    modelport.convert.convert(prototxt, caffemodel, out_dir) -> folder with a standalone model.py,
        model.safetensors and conversion.json
    modelport.inspect.inspect_files(prototxt, caffemodel) -> per-layer shapes, params, MACs
    modelport.port_weights(tf_or_keras_file, torch_module) -> PortReport (modelport.tf)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.errors import (
    ConfigError,
    FormatError,
    LayerError,
    ModelportError,
    ParityError,
    ShapeError,
    UnsupportedLayerError,
    WeightError,
)

if TYPE_CHECKING:
    from modelport.layers.registry import register_layer
    from modelport.tf.port import port_weights

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "FormatError",
    "LayerError",
    "ModelportError",
    "ParityError",
    "ShapeError",
    "UnsupportedLayerError",
    "WeightError",
    "__version__",
    "port_weights",
    "register_layer",
    "verify",
]


def __getattr__(name: str) -> Any:  # lazy: modelport.verify and modelport.layers import torch
    if name == "register_layer":  # `import modelport` (the CLI's --help, inspect) stays torch-free
        from modelport.layers.registry import register_layer

        return register_layer
    if name == "port_weights":  # TF / Keras weights into a PyTorch module
        from modelport.tf.port import port_weights

        return port_weights
    if name == "verify":
        # The subpackage modelport.verify is itself callable: modelport.verify(net, ref, inputs).
        import modelport.verify as verify

        return verify
    raise AttributeError(f"module 'modelport' has no attribute {name!r}")
