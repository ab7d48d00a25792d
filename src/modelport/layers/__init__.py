"""Caffe layer converters, one module per family; importing this package registers them all."""

from modelport.layers import (  # noqa: F401  (imported for their @register_layer side effects)
    activation,
    conv,
    data,
    eltwise,
    inner_product,
    loss,
    norm,
    pooling,
    reduce,
    shape,
    ssd,
)
from modelport.layers.registry import layer_types, lookup, register_layer

__all__ = ["layer_types", "lookup", "register_layer"]
