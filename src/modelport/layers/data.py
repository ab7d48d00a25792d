"""Layers that declare net inputs (Input, MemoryData, DummyData) or read training data
(Data, ImageData, HDF5Data, WindowData).

Their tops are fed by the caller (or, in training, by modelport.train.data's pipeline), so they
have no module; the converter functions exist so the registry knows the types and is never
called.
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


# Training data layers: blob sources that read files. modelport.train.data produces their
# batches (make_batches / net_batches); in a converted module their tops are inputs.

@register_layer("Data", role="data")
def convert_data(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe Data (layers/data_layer.cpp): reads Datum records (raw uint8, float_data or encoded
    images) from a LevelDB (Caffe's default backend) or an LMDB in key order, wrapping around,
    through the DataTransformer (crop, mirror, mean, scale); tops data and optional label."""
    return _fed_by_caller(layer, ctx)


@register_layer("ImageData", role="data")
def convert_image_data(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe ImageData (layers/image_data_layer.cpp): a 'path label' list read with OpenCV
    (imread colour/grayscale, optional INTER_LINEAR resize to new_height x new_width), shuffle
    and rand_skip, then the DataTransformer; tops data and label."""
    return _fed_by_caller(layer, ctx)


@register_layer("HDF5Data", role="data")
def convert_hdf5_data(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe HDF5Data (layers/hdf5_data_layer.cpp): each top reads the same-named dataset of the
    listed .h5 files as float32, rows in order with wrap-around (optionally shuffled), no
    transform."""
    return _fed_by_caller(layer, ctx)


@register_layer("WindowData", role="data")
def convert_window_data(layer: Layer, ctx: ConvertContext) -> CaffeModule:
    """Caffe WindowData (layers/window_data_layer.cpp): R-CNN foreground/background window
    sampling; its tops are net inputs here, and modelport's data pipeline refuses to read it
    with an explanation."""
    return _fed_by_caller(layer, ctx)
