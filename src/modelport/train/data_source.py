"""What every data layer source shares: per-item randomness, batch assembly, the worker loader.

Image sources (ImageData, Data) are *item sources*: item `k` of the endless stream a layer
produces (batch `b` holds items `b * batch_size ... + batch_size - 1`) is a pure function of
`(seed, k)`, so batches are identical whether they are built in this process or by DataLoader
workers, with any number of workers. HDF5Data is a *stream* read sequentially in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modelport.errors import ConfigError, LayerError

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

Batch = dict[str, torch.Tensor]

# Independent random streams derived from the user's seed.
STREAM_SKIP, STREAM_SHUFFLE, STREAM_TRANSFORM = 0, 1, 2


def check_seed(seed: int) -> int:
    """A seed as a non-negative int (ConfigError otherwise)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def stream_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """A numpy Generator for one (seed, stream, index), independent of every other triple."""
    return np.random.default_rng([seed, stream, index])


class ItemSource:
    """Base class of ImageData/Data sources: `item(k)` is item k of the layer's endless stream."""

    layer_name: str
    layer_type: str
    tops: tuple[str, ...]
    batch_size: int
    # Caffe's DataTransformer stream (modelport.train.caffe_replay) under Solver(rng="caffe").
    caffe_transform_rand: Any = None

    def __len__(self) -> int:
        raise NotImplementedError

    def transform_rng(self, k: int, seed: int, needs_rand: bool) -> Any:
        """What item k's random crop/mirror draws from: None when the transform draws nothing,
        Caffe's transformer stream at item k under rng="caffe", else a generator of its own."""
        if not needs_rand:
            return None
        if self.caffe_transform_rand is not None:
            return self.caffe_transform_rand.for_item(k)
        return stream_rng(seed, STREAM_TRANSFORM, k)

    def item(self, k: int) -> tuple[np.ndarray, float]:
        """(C x H x W float32 data, label) of stream item k."""
        raise NotImplementedError

    def describe(self, k: int) -> str:
        """Names stream item k in error messages (file name, database key)."""
        raise NotImplementedError

    def error(self, what: str, fix: str | None = None) -> LayerError:
        return LayerError(self.layer_name, self.layer_type, what, fix)

    def batch(self, index: int) -> Batch:
        ks = range(index * self.batch_size, (index + 1) * self.batch_size)
        return collate_items(self, [(k, *self.item(k)) for k in ks])

    def batches(self) -> Iterator[Batch]:
        index = 0
        while True:
            yield self.batch(index)
            index += 1

    def top_shapes(self) -> dict[str, tuple[int, ...]]:
        """Caffe's DataLayerSetUp: the data top is shaped from the first item."""
        data, _ = self.item(0)
        shapes = {self.tops[0]: (self.batch_size, *data.shape)}
        if len(self.tops) > 1:
            shapes[self.tops[1]] = (self.batch_size,)
        return shapes


def collate_items(source: ItemSource, items: Sequence[tuple[int, np.ndarray, float]]) -> Batch:
    """Stack (k, data, label) items into a batch; like Caffe, every item must have the shape of
    the batch's first one."""
    first_k, first, _ = items[0]
    for k, arr, _ in items[1:]:
        if arr.shape != first.shape:
            raise source.error(
                f"{source.describe(k)} gives a {'x'.join(map(str, arr.shape))} item but the "
                f"batch's first item ({source.describe(first_k)}) is "
                f"{'x'.join(map(str, first.shape))}; Caffe shapes a batch from its first item",
                "give every item one size (crop_size, or new_height/new_width)")
    out = {source.tops[0]: torch.from_numpy(np.stack([arr for _, arr, _ in items]))}
    if len(source.tops) > 1:
        out[source.tops[1]] = torch.tensor([label for _, _, label in items], dtype=torch.float32)
    return out


class _ItemDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]  # yields tuples
    def __init__(self, source: ItemSource) -> None:
        self.source = source

    def __getitem__(self, k: int) -> tuple[int, np.ndarray, float]:
        return (k, *self.source.item(k))


class _EndlessBatches(torch.utils.data.Sampler):  # type: ignore[type-arg]  # yields index lists
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        b = 0
        while True:
            yield list(range(b * self.batch_size, (b + 1) * self.batch_size))
            b += 1


class _Collate:
    def __init__(self, source: ItemSource) -> None:
        self.source = source

    def __call__(self, items: list[tuple[int, np.ndarray, float]]) -> Batch:
        return collate_items(self.source, items)


def _worker_init(_: int) -> None:
    try:
        import cv2

        cv2.setNumThreads(1)  # one decoder thread per worker: the workers are the parallelism
    except ImportError:  # pragma: no cover
        pass


def item_loader(source: ItemSource, num_workers: int, prefetch_factor: int = 2) -> DataLoader:  # type: ignore[type-arg]
    """A torch DataLoader yielding the same endless batches as `source.batches()`."""
    from torch.utils.data import DataLoader

    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    dataset, sampler = _ItemDataset(source), _EndlessBatches(source.batch_size)
    if num_workers == 0:
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=_Collate(source))
    # Workers are spawned, not forked: a fork taken while OpenCV's or OpenMP's thread pools are
    # live can deadlock the child (seen in CI: a worker hung in cv2.setNumThreads).
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=_Collate(source),
                      num_workers=num_workers, prefetch_factor=prefetch_factor,
                      persistent_workers=True, worker_init_fn=_worker_init,
                      multiprocessing_context="spawn")


def read_list_lines(path: str, layer: tuple[str, str], what: str) -> list[str]:
    """The lines of a source list file, with a clear error naming the layer when it is missing."""
    if not os.path.isfile(path):
        raise LayerError(layer[0], layer[1], f"{what} '{path}' does not exist",
                         "paths in a prototxt are relative to Caffe's working directory: pass "
                         "base_dir= (or --data-root) pointing at it")
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # std::getline yields no empty line after the final newline
    return lines
