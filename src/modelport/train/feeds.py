"""Batches for a training net's data layers (what Caffe's data layers put in their tops).

A Feed produces one dict {top name: float32 tensor} per forward pass and can save and restore
its read position (so `--resume` continues with the next batch, which Caffe itself does not).

HDF5Data is read here (layers/hdf5_data_layer.cpp): the `source` list file names .h5 files
(whitespace-separated); each file is loaded whole; every top is the dataset of the same name;
rows are taken in order, moving to the next file at the end of one and back to the first after
the last, so a batch may straddle files or the wrap. Top shape: batch_size x dataset dims[1:].
With several training processes (Caffe's multi-GPU solvers, torchrun here) process `rank` of
`world` takes the rows whose running offset % world == rank (HDF5DataLayer::Skip).
Other data layer types come from `modelport.train.data` when it provides them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from modelport.errors import ConfigError, FormatError, LayerError
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


def _list_file(path: str, layer: Layer) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            names = fh.read().split()
    except OSError as exc:
        raise LayerError(layer.name, layer.type, f"cannot read source list '{path}' "
                         f"({exc.strerror})", "check hdf5_data_param.source") from None
    if not names:
        raise LayerError(layer.name, layer.type, f"source list '{path}' names no files",
                         "list one .h5 file per line")
    return names


class HDF5Feed:
    """Sequential (or seeded-shuffle) reader of Caffe HDF5Data sources."""

    def __init__(self, layer: Layer, resolve: Resolver, phase: int, rank: int = 0,
                 world: int = 1, seed: int | None = None) -> None:
        p = layer.param.hdf5_data_param
        self.layer = layer
        self.tops = tuple(layer.tops)
        if not p.source:
            raise LayerError(layer.name, layer.type, "hdf5_data_param.source is not set")
        if p.batch_size == 0:
            raise LayerError(layer.name, layer.type, "hdf5_data_param.batch_size is 0",
                             "set batch_size")
        self.batch = int(p.batch_size)
        list_path = resolve(p.source)
        self.files = [resolve(n) for n in _list_file(list_path, layer)]
        self.shuffle = bool(p.shuffle)
        self.rng = np.random.default_rng(seed)
        # Caffe shards rows across solvers only in TRAIN (Skip() keeps every row in TEST).
        self.rank, self.world = (rank, world) if phase == caffe_pb2.TRAIN else (0, 1)
        self.file_order = list(range(len(self.files)))
        if self.shuffle:
            self.rng.shuffle(self.file_order)
        self.file_pos = 0
        self.row = 0
        self.offset = 0
        self._load(self.file_order[0])

    def _load(self, index: int) -> None:
        try:
            import h5py
        except ImportError:
            raise ConfigError("HDF5Data needs h5py. Fix: pip install 'modelport[data]'") from None
        path = self.files[index]
        try:
            with h5py.File(path, "r") as fh:
                arrays = {}
                for top in self.tops:
                    if top not in fh:
                        raise LayerError(self.layer.name, self.layer.type,
                                         f"'{path}' has no dataset '{top}' (it has "
                                         f"{', '.join(sorted(fh.keys()))})",
                                         "name each top after a dataset in the file")
                    arrays[top] = np.ascontiguousarray(fh[top][()], dtype=np.float32)
        except OSError as exc:
            raise FormatError(f"layer '{self.layer.name}' (type HDF5Data): cannot read "
                              f"'{path}' ({exc}). Fix: check the file list") from None
        rows = {a.shape[0] if a.ndim else 0 for a in arrays.values()}
        if len(rows) != 1 or 0 in rows:
            raise LayerError(self.layer.name, self.layer.type,
                             f"datasets in '{path}' have different or zero row counts "
                             f"({ {k: v.shape for k, v in arrays.items()} })",
                             "every top's dataset needs the same number of rows")
        self.arrays = arrays
        self.rows = rows.pop()
        self.perm = np.arange(self.rows)
        if self.shuffle:
            self.rng.shuffle(self.perm)
        self.loaded = index

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {t: (self.batch,) + tuple(self.arrays[t].shape[1:]) for t in self.tops}

    def _advance(self) -> None:
        self.row += 1
        if self.row == self.rows:
            if len(self.files) > 1:
                self.file_pos += 1
                if self.file_pos == len(self.files):
                    self.file_pos = 0
                    if self.shuffle:
                        self.rng.shuffle(self.file_order)
                self._load(self.file_order[self.file_pos])
            elif self.shuffle:
                self.rng.shuffle(self.perm)
            self.row = 0
        self.offset += 1

    def next_batch(self) -> dict[str, torch.Tensor]:
        picks: dict[str, list[np.ndarray]] = {t: [] for t in self.tops}
        for _ in range(self.batch):
            while self.offset % self.world != self.rank:
                self._advance()
            r = self.perm[self.row]
            for t in self.tops:
                picks[t].append(self.arrays[t][r])
            self._advance()
        return {t: torch.from_numpy(np.stack(v)) for t, v in picks.items()}

    def state(self) -> dict[str, Any]:
        if self.shuffle:
            return {"shuffle": True}  # the permutation is not saved; resume reshuffles
        return {"file_pos": self.file_pos, "row": self.row, "offset": self.offset}

    def restore(self, state: dict[str, Any]) -> None:
        if "row" not in state:
            return
        self.file_pos = int(state["file_pos"]) % len(self.files)
        if self.loaded != self.file_order[self.file_pos]:
            self._load(self.file_order[self.file_pos])
        self.row = int(state["row"]) % self.rows
        self.offset = int(state["offset"])

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
    are refilled on every forward pass (from torch's generator, not Caffe's RNG)."""

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

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._shapes)

    def next_batch(self) -> dict[str, torch.Tensor]:
        return {t: self._fixed[t] if t in self._fixed
                else self._fill(self._fillers[t], self._shapes[t]) for t in self.tops}

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
        resolved = resolve(src) if src else resolve(".")
        base = os.path.dirname(resolved) if src and not os.path.isabs(src) else resolve(".")
        if src and not os.path.isabs(src):
            # the directory the relative source was found against (the working directory)
            base = resolved[: len(resolved) - len(src)].rstrip("/\\") or "."
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
