"""Batches for a training net's data layers (what Caffe's data layers put in their tops).

A Feed produces one dict {top name: float32 tensor} per forward pass and can save and restore
its read position (so `--resume` continues with the next batch, which Caffe itself does not).

HDF5Data (layers/hdf5_data_layer.cpp) takes rows in order, moving to the next file at the end
of one and back to the first after the last, so a batch may straddle files or the wrap; the
files are read by the data pipeline's Hdf5Source. With several training processes (Caffe's
multi-GPU solvers, torchrun here) process `rank` of `world` takes the rows whose running
offset % world == rank (HDF5DataLayer::Skip, DataLayer::Skip), in TRAIN only.
Other data layer types come from `modelport.train.data` when it provides them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from modelport.errors import LayerError
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Layer


class Feed(Protocol):
    """The data source of one data layer."""

    tops: tuple[str, ...]

    def shapes(self) -> dict[str, tuple[int, ...]]: ...

    def next_batch(self) -> dict[str, torch.Tensor]: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


Resolver = Callable[[str], str]


def _base_dir(src: str, resolve: Resolver) -> str:
    """The directory a relative source path was found against (the working directory, or the
    solver file's folder as a fallback)."""
    if not src or os.path.isabs(src):
        return resolve(".")
    resolved = resolve(src)
    return resolved[: len(resolved) - len(src)].rstrip("/\\") or "."


class HDF5Feed:
    """Caffe HDF5Data rows in order (HDF5DataLayer::Forward_cpu + Next), with Caffe's
    multi-solver sharding and a saved position. Files are listed, read and checked by the data
    pipeline's Hdf5Source (modelport.train.data_hdf5), whose seeded file/row orders also make
    `shuffle: true` resumable."""

    def __init__(self, layer: Layer, resolve: Resolver, phase: int, rank: int = 0,
                 world: int = 1, seed: int | None = None) -> None:
        from modelport.train.data_hdf5 import Hdf5Source

        p = layer.param.hdf5_data_param
        self.layer = layer
        self.tops = tuple(layer.tops)
        self.source = Hdf5Source(layer, _base_dir(p.source, resolve), 0 if seed is None else seed)
        self.batch = self.source.batch_size
        # Caffe shards rows across solvers only in TRAIN (Skip() keeps every row in TEST).
        self.rank, self.world = (rank, world) if phase == caffe_pb2.TRAIN else (0, 1)
        self._seek(0, 0, 0, 0, 0)

    def _seek(self, file_pass: int, file_pos: int, restarts: int, row: int, offset: int) -> None:
        self.file_pass, self.file_pos, self.restarts = file_pass, file_pos, restarts
        self.order = self.source.file_order(file_pass)
        self.arrays = self.source.load(self.order[file_pos])
        self.rows = self.source._row_order(self.arrays, restarts)  # the pipeline's row order
        self.row = row % len(self.rows)
        self.offset = offset

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self.source.top_shapes())

    def _advance(self) -> None:
        self.row += 1
        if self.row == len(self.rows):
            file_pass, file_pos = self.file_pass, self.file_pos
            if len(self.source.files) > 1:
                file_pos += 1
                if file_pos == len(self.source.files):
                    file_pos, file_pass = 0, file_pass + 1
            self._seek(file_pass, file_pos, self.restarts + 1, 0, self.offset)
        self.offset += 1

    def next_batch(self) -> dict[str, torch.Tensor]:
        picks: dict[str, list[np.ndarray]] = {t: [] for t in self.tops}
        for _ in range(self.batch):
            while self.offset % self.world != self.rank:
                self._advance()
            r = self.rows[self.row]
            for t in self.tops:
                picks[t].append(self.arrays[t][r])
            self._advance()
        return {t: torch.from_numpy(np.stack(v)) for t, v in picks.items()}

    def state(self) -> dict[str, Any]:
        return {"file_pass": self.file_pass, "file_pos": self.file_pos,
                "restarts": self.restarts, "row": self.row, "offset": self.offset}

    def restore(self, state: dict[str, Any]) -> None:
        if "row" in state:
            self._seek(int(state["file_pass"]), int(state["file_pos"]) % len(self.source.files),
                       int(state["restarts"]), int(state["row"]), int(state["offset"]))

    def skip(self, passes: int) -> None:
        """Advance as if `passes` batches had been read."""
        for _ in range(passes * self.batch):
            while self.offset % self.world != self.rank:
                self._advance()
            self._advance()


class PipelineFeed:
    """A data layer read by modelport.train.data (ImageData, Data/LMDB): batch b of process
    `rank` holds the stream items whose offset % world == rank, as Caffe's DataLayer::Skip
    shards them across solvers in TRAIN."""

    def __init__(self, layer: Layer, base_dir: str, phase: int, rank: int = 0, world: int = 1,
                 seed: int | None = None) -> None:
        from modelport.train.data import open_source
        from modelport.train.data_source import ItemSource

        self.layer = layer
        self.tops = tuple(layer.tops)
        source = open_source(layer, phase, base_dir, 0 if seed is None else seed)
        if not isinstance(source, ItemSource):
            raise LayerError(layer.name, layer.type, "is not an item source")
        self.source: ItemSource = source
        self.rank, self.world = (rank, world) if phase == caffe_pb2.TRAIN else (0, 1)
        self.index = 0

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self.source.top_shapes())

    def next_batch(self) -> dict[str, torch.Tensor]:
        from modelport.train.data_source import collate_items

        if self.world == 1:
            batch = self.source.batch(self.index)
        else:
            n = self.source.batch_size
            ks = [(self.index * n + i) * self.world + self.rank for i in range(n)]
            batch = collate_items(self.source, [(k, *self.source.item(k)) for k in ks])
        self.index += 1
        return {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(v)
                for k, v in batch.items()}

    def state(self) -> dict[str, Any]:
        return {"batch": self.index}

    def restore(self, state: dict[str, Any]) -> None:
        self.index = int(state.get("batch", 0))


class DummyFeed:
    """Caffe DummyData (layers/dummy_data_layer.cpp): each top has a declared shape (`shape`,
    or legacy num/channels/height/width; one for all tops or one per top) and a filler (none:
    constant 0; one for all tops or one per top). Constant tops are filled once; the others
    are refilled on every forward pass (from torch's generator; from Caffe's global stream when
    `caffe_rng` is set by Solver(rng="caffe"))."""

    def __init__(self, layer: Layer) -> None:
        p = layer.param.dummy_data_param
        self.tops = tuple(layer.tops)
        n = len(self.tops)

        def pick(values: Any, what: str) -> list[Any]:
            if len(values) not in (1, n):
                raise LayerError(layer.name, layer.type,
                                 f"has {len(values)} {what} entries for {n} tops",
                                 f"give {what} once, or once per top")
            return list(values) * n if len(values) == 1 else list(values)

        if p.shape:
            shapes = [tuple(int(d) for d in s.dim) for s in pick(p.shape, "shape")]
        else:
            legacy = [pick(getattr(p, f), f) if len(getattr(p, f)) else [1] * n
                      for f in ("num", "channels", "height", "width")]
            if not len(p.num):
                raise LayerError(layer.name, layer.type, "declares no shape",
                                 "set dummy_data_param.shape")
            shapes = [tuple(int(v[i]) for v in legacy) for i in range(n)]
        fillers = (pick(p.data_filler, "data_filler") if len(p.data_filler)
                   else [caffe_pb2.FillerParameter(type="constant", value=0.0)] * n)
        self._shapes = dict(zip(self.tops, shapes))
        self._fillers = dict(zip(self.tops, fillers))
        from modelport.fillers import fill

        self._fill = fill
        self._fixed = {t: fill(f, self._shapes[t]) for t, f in self._fillers.items()
                       if f.type == "constant"}
        self.caffe_rng: Any = None  # Caffe's global stream under Solver(rng="caffe")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._shapes)

    def next_batch(self) -> dict[str, torch.Tensor]:
        return {t: self._fixed[t] if t in self._fixed
                else self._fill(self._fillers[t], self._shapes[t], rng=self.caffe_rng)
                for t in self.tops}

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass


def make_feed(layer: Layer, resolve: Resolver, phase: int, rank: int = 0, world: int = 1,
              seed: int | None = None) -> Feed:
    """The feed for one data layer of a training/test net."""
    if layer.type == "HDF5Data":
        return HDF5Feed(layer, resolve, phase, rank, world, seed)
    if layer.type in ("Data", "ImageData", "WindowData"):
        p = layer.param
        src = (p.image_data_param.source if layer.type == "ImageData" else
               p.data_param.source if layer.type == "Data" else p.window_data_param.source)
        base = _base_dir(src, resolve)
        return PipelineFeed(layer, base, phase, rank, world, seed)
    if layer.type == "DummyData":
        return DummyFeed(layer)
    raise LayerError(layer.name, layer.type, "this data layer type cannot be read by modelport",
                     "feed it yourself: Solver(feeds={layer name: feed})")


# Caffe layers whose tops come from files or memory (what the solver feeds).
DATA_LAYER_TYPES = frozenset({"Data", "ImageData", "HDF5Data", "WindowData", "MemoryData",
                              "DummyData", "Input", "AnnotatedData", "VideoData"})


def resolve_against(workdir: str, fallback: str | None = None) -> Resolver:
    """A resolver for the relative paths in solver/net files: Caffe resolves them against its
    working directory; if the file is not there but exists beside the solver file, use that."""

    def resolve(path: str) -> str:
        if os.path.isabs(path):
            return path
        first = os.path.join(workdir, path)
        if os.path.exists(first) or fallback is None:
            return first
        second = os.path.join(fallback, path)
        return second if os.path.exists(second) else first

    return resolve
