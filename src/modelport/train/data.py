"""Batches from a net's data layers, as Caffe's data layers would produce them.

    from modelport.train.data import make_batches, data_top_shapes
    batches = make_batches(layer, phase="train", base_dir="path/caffe/ran/in", seed=0)
    blobs = next(batches)        # {"data": float32 tensor N x C x H x W, "label": N}

Supported: ImageData (image list + OpenCV), Data (LevelDB or LMDB of Datum: raw, float_data,
encoded), HDF5Data. WindowData raises a clear error. Paths in the prototxt and in
list files are resolved against `base_dir`, standing in for the directory Caffe ran in.

Every iterator is endless (Caffe's data layers wrap around). For image sources,
`make_loader(..., num_workers=n)` builds a torch DataLoader whose batches are identical to
`make_batches` with the same seed, whatever the number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from modelport.errors import ConfigError, LayerError, ModelportError
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Layer, Net
from modelport.train.data_source import Batch, ItemSource, check_seed, item_loader
from modelport.train.transform import DataTransformer, parse_phase, read_image

if TYPE_CHECKING:
    from modelport.train.data_hdf5 import Hdf5Source

__all__ = [
    "DATA_LAYER_TYPES",
    "data_layers",
    "data_top_shapes",
    "effective_transform_param",
    "make_batches",
    "make_loader",
    "net_batches",
    "net_data_shapes",
    "open_source",
    "preprocess_for_layer",
]

DATA_LAYER_TYPES = ("Data", "ImageData", "HDF5Data", "WindowData")

# Fields Caffe's UpgradeNetDataTransformation moves from V1 data parameters to transform_param.
_LEGACY_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


def effective_transform_param(layer: Layer) -> caffe_pb2.TransformationParameter:
    """The layer's transform_param, completed with the legacy scale/mean_file/crop_size/mirror
    of data_param / image_data_param / window_data_param (V1 nets keep them there; Caffe's
    upgrade moves them into transform_param)."""
    out = caffe_pb2.TransformationParameter()
    out.CopyFrom(layer.param.transform_param)
    legacy = {"Data": "data_param", "ImageData": "image_data_param",
              "WindowData": "window_data_param"}.get(layer.type)
    if legacy and layer.param.HasField(legacy):
        old = getattr(layer.param, legacy)
        for name in _LEGACY_TRANSFORM_FIELDS:
            if old.HasField(name) and not out.HasField(name):
                setattr(out, name, getattr(old, name))
    return out


def _layer_of(layer: Layer | caffe_pb2.LayerParameter) -> Layer:
    if isinstance(layer, Layer):
        return layer
    return Layer(layer.name, layer.type, tuple(layer.bottom), tuple(layer.top), layer)


def _transformer(layer: Layer, phase: int, base_dir: str | os.PathLike[str] | None
                 ) -> DataTransformer:
    try:
        return DataTransformer(effective_transform_param(layer), phase, base_dir)
    except LayerError:
        raise
    except ModelportError as exc:
        raise LayerError(layer.name, layer.type, str(exc)) from None


def open_source(layer: Layer | caffe_pb2.LayerParameter, phase: str | int = "train",
                base_dir: str | os.PathLike[str] | None = None, seed: int = 0
                ) -> ItemSource | Hdf5Source:
    """The source behind one data layer: an ItemSource (ImageData, Data) or an Hdf5Source."""
    lay = _layer_of(layer)
    ph = parse_phase(phase)
    seed = check_seed(seed)
    if lay.type == "ImageData":
        from modelport.train.data_image import ImageDataSource

        return ImageDataSource(lay, _transformer(lay, ph, base_dir), base_dir, seed)
    if lay.type == "Data":
        from modelport.train.data_lmdb import LmdbDatumSource

        return LmdbDatumSource(lay, _transformer(lay, ph, base_dir), base_dir, seed)
    if lay.type == "HDF5Data":
        from modelport.train.data_hdf5 import Hdf5Source

        return Hdf5Source(lay, base_dir, seed)
    if lay.type == "WindowData":
        raise LayerError(lay.name, lay.type,
                         "WindowData (R-CNN window sampling) is not supported by modelport's "
                         "data pipeline",
                         "feed the crops yourself (e.g. an Input layer and your own sampler), "
                         "or convert the windows to an ImageData list or an LMDB")
    raise ConfigError(f"layer '{lay.name}' (type {lay.type}) is not a data layer modelport can "
                      f"read (supported: {', '.join(DATA_LAYER_TYPES[:3])})")


def make_batches(layer: Layer | caffe_pb2.LayerParameter, phase: str | int = "train",
                 base_dir: str | os.PathLike[str] | None = None, seed: int = 0
                 ) -> Iterator[Batch]:
    """Endless batches of one data layer: dicts top name -> float32 tensor, in Caffe's order
    (forward pass p gets batch p)."""
    return open_source(layer, phase, base_dir, seed).batches()


def make_loader(layer: Layer | caffe_pb2.LayerParameter, phase: str | int = "train",
                base_dir: str | os.PathLike[str] | None = None, seed: int = 0,
                num_workers: int = 2, prefetch_factor: int = 2) -> Iterable[Batch]:
    """Like make_batches, decoded by a torch DataLoader with `num_workers` processes (image
    sources); the batches equal make_batches' for the same seed. HDF5Data, already in memory,
    is returned as the plain in-process stream."""
    source = open_source(layer, phase, base_dir, seed)
    if isinstance(source, ItemSource):
        return item_loader(source, num_workers, prefetch_factor)
    return _Restartable(source)


class _Restartable:
    """An iterable whose every iter() restarts the source's stream (like a DataLoader)."""

    def __init__(self, source: Hdf5Source) -> None:
        self.source = source

    def __iter__(self) -> Iterator[Batch]:
        return self.source.batches()


def data_top_shapes(layer: Layer | caffe_pb2.LayerParameter, phase: str | int = "train",
                    base_dir: str | os.PathLike[str] | None = None, seed: int = 0
                    ) -> dict[str, tuple[int, ...]]:
    """The shape of each top, as Caffe's DataLayerSetUp infers it from the first item (ImageData,
    Data) or from the first file's datasets (HDF5Data)."""
    return open_source(layer, phase, base_dir, seed).top_shapes()


def data_layers(net: Net) -> list[Layer]:
    """The net's data layers (those Caffe fills from files), in net order."""
    return [layer for layer in net.layers if layer.type in DATA_LAYER_TYPES]


def net_data_shapes(net: Net, base_dir: str | os.PathLike[str] | None = None, seed: int = 0
                    ) -> dict[str, tuple[int, ...]]:
    """Every data layer top's shape: pass it as `input_shapes` when building the net."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(data_layers(net)):
        shapes.update(data_top_shapes(layer, net.phase, base_dir, _layer_seed(seed, i)))
    return shapes


def net_batches(net: Net, base_dir: str | os.PathLike[str] | None = None, seed: int = 0
                ) -> Iterator[Batch]:
    """Endless dicts holding every data layer's tops for one forward pass of `net` (each data
    layer draws from its own random stream)."""
    streams = [make_batches(layer, net.phase, base_dir, _layer_seed(seed, i))
               for i, layer in enumerate(data_layers(net))]
    if not streams:
        raise ConfigError(f"{net.source} has no data layers ({', '.join(DATA_LAYER_TYPES[:3])})")
    while True:
        blobs: Batch = {}
        for stream in streams:
            blobs.update(next(stream))
        yield blobs


def _layer_seed(seed: int, index: int) -> int:
    """A distinct, reproducible seed for the index-th data layer of a net (the first keeps
    `seed`, so a one-data-layer net matches make_batches)."""
    if index == 0:
        return check_seed(seed)
    return int(np.random.SeedSequence([check_seed(seed), 7, index]).generate_state(1)[0])


def preprocess_for_layer(path: str | os.PathLike[str], layer: Layer | caffe_pb2.LayerParameter,
                         base_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
    """One image file as `layer`'s TEST-phase pipeline would feed it: a 1 x C x h x w float32
    batch. ImageData: its is_color and new_height/new_width, then its transform_param. Data:
    the image at its own size (read in colour unless force_gray), then transform_param, as if
    convert_imageset had stored it without resizing. `base_dir` resolves a mean_file."""
    lay = _layer_of(layer)
    if lay.type not in ("ImageData", "Data"):
        raise ConfigError(f"layer '{lay.name}' (type {lay.type}) has no image pipeline; "
                          "use preprocess_image with explicit settings")
    tr = _transformer(lay, caffe_pb2.TEST, base_dir)
    if tr.mirror:
        raise LayerError(lay.name, lay.type, "mirror: true flips at random even at TEST",
                         "use preprocess_image, or set mirror: false")
    if lay.type == "ImageData":
        p = lay.param.image_data_param
        img = read_image(os.fspath(path), bool(p.is_color), int(p.new_height), int(p.new_width))
    else:
        img = read_image(os.fspath(path), not tr.force_gray)
    try:
        return tr.transform_image(img)[None]
    except ModelportError as exc:
        raise LayerError(lay.name, lay.type, f"image '{os.fspath(path)}': {exc}") from None
