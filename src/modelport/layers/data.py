"""Layers that declare net inputs (Input, MemoryData, DummyData).

Their tops are fed by the caller (or, in training, by modelport's data pipeline), so they have
no module; the converter functions exist so the registry knows the types and is never called.
Training data layers (Data, ImageData, HDF5Data) are registered by modelport.train.data.
"""

from __future__ import annotations

from modelport.ir import Layer
from modelport.layers.base import CaffeModule, ConvertContext
from modelport.layers.registry import register_layer


def _fed_by_caller(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    raise AssertionError(f"input layer '{layer.name}' has no module")  # never called


@register_layer("Input", role="input")
def convert_input(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Input (layers/input_layer.cpp): declares input blobs and their shapes
    (`input_param.shape`, one per top or one for all); the legacy `input:`/`input_dim:` net fields
    are upgraded to this layer."""
    return _fed_by_caller(layer, ctx)


@register_layer("MemoryData", role="input")
def convert_memory_data(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe MemoryData (layers/memory_data_layer.cpp): data and label blobs of shape
    batch_size x channels x height x width (and batch_size) fed from memory; fed here as inputs."""
    return _fed_by_caller(layer, ctx)


@register_layer("DummyData", role="input")
def convert_dummy_data(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe DummyData (layers/dummy_data_layer.cpp): blobs of declared shapes filled by
    fillers; treated as net inputs of those shapes."""
    return _fed_by_caller(layer, ctx)
