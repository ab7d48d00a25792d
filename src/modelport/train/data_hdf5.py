"""Caffe's HDF5Data layer (src/caffe/layers/hdf5_data_layer.cpp) as an endless batch stream.

`source` lists .h5 files (whitespace-separated, each relative to Caffe's working directory).
Every top reads the dataset of the same name, converted to float32; the top's shape is
batch_size x the dataset's trailing dims. Rows are read sequentially and wrap around: forward
pass p uses rows p*B .. p*B+B-1 of the concatenated files, modulo the total (a batch may
straddle a file end or the wrap). With `shuffle`, the file order is permuted at setup and after
each pass over the files, and the row order whenever a file is (re)started, from the caller's
seed (Caffe uses std::random_shuffle, which cannot be reproduced). HDF5Data has no transform
step: Caffe refuses a transform_param on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

from modelport.errors import LayerError
from modelport.ir import Layer
from modelport.train.data_source import STREAM_SHUFFLE, Batch, read_list_lines, stream_rng
from modelport.train.transform import resolve_path

# Distinct sub-streams of STREAM_SHUFFLE: file orders and row orders.
_FILES, _ROWS = 0, 1


class Hdf5Source:
    """The batches of one HDF5Data layer."""

    def __init__(self, layer: Layer, base_dir: str | os.PathLike[str] | None, seed: int) -> None:
        p = layer.param.hdf5_data_param
        self.layer_name, self.layer_type = layer.name, layer.type
        self.tops = tuple(layer.tops)
        if not self.tops:
            raise self.error("has no tops", "name one top per HDF5 dataset to read")
        if layer.param.HasField("transform_param"):
            raise self.error("HDF5Data does not transform data, but transform_param is set",
                             "remove transform_param and store preprocessed data in the .h5 "
                             "files")
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.error("hdf5_data_param.batch_size must be positive", "set batch_size")
        self.base_dir = base_dir
        self.seed = seed
        self.shuffle = bool(p.shuffle)
        self.source_path = resolve_path(p.source, base_dir)
        lines = read_list_lines(self.source_path, (layer.name, layer.type), "HDF5 file list")
        # Caffe reads the list with `source_file >> line`: whitespace-separated tokens.
        self.files = [tok for line in lines for tok in line.split()]
        if not self.files:
            raise self.error(f"HDF5 file list '{self.source_path}' names no files")
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        self._trailing: dict[str, tuple[int, ...]] | None = None
        first = self.load(self.file_order(0)[0])
        self._trailing = {top: arr.shape[1:] for top, arr in first.items()}

    def error(self, what: str, fix: str | None = None) -> LayerError:
        return LayerError(self.layer_name, self.layer_type, what, fix)

    def file_order(self, file_pass: int) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.files)))
        rng = stream_rng(self.seed, STREAM_SHUFFLE, 2 * file_pass + _FILES)
        return [int(i) for i in rng.permutation(len(self.files))]

    def load(self, index: int) -> dict[str, np.ndarray]:
        """Every top's dataset of file `index` as float32 (LoadHDF5FileData)."""
        if index in self._cache:
            return self._cache[index]
        try:
            import h5py
        except ImportError:  # pragma: no cover - part of the data extra
            raise self.error("reading HDF5 needs the h5py package",
                             "pip install 'modelport[data]' (or h5py)") from None

        path = resolve_path(self.files[index], self.base_dir)
        if not os.path.isfile(path):
            raise self.error(f"HDF5 file '{path}' (listed in '{self.source_path}') does not exist",
                             "paths in the list are relative to Caffe's working directory "
                             "(base_dir), not to the list file")
        arrays: dict[str, np.ndarray] = {}
        try:
            with h5py.File(path, "r") as fh:
                for top in self.tops:
                    if top not in fh or not isinstance(fh[top], h5py.Dataset):
                        names = sorted(k for k in fh if isinstance(fh[k], h5py.Dataset))
                        raise self.error(f"HDF5 file '{path}' has no dataset '{top}' (it has "
                                         f"{', '.join(names) or 'none'})",
                                         "name the layer's tops after the datasets")
                    ds = fh[top]
                    if ds.ndim < 1 or ds.dtype.kind not in "fiu":
                        raise self.error(f"dataset '{top}' of '{path}' is {ds.dtype} with shape "
                                         f"{ds.shape}; Caffe reads integer or float arrays "
                                         "of at least one axis")
                    arrays[top] = np.asarray(ds[()], dtype=np.float32)
        except OSError as exc:
            raise self.error(f"cannot read HDF5 file '{path}': {exc}") from None
        rows = arrays[self.tops[0]].shape[0]
        for top, arr in arrays.items():
            if arr.shape[0] != rows:
                raise self.error(f"in '{path}', dataset '{top}' has {arr.shape[0]} rows but "
                                 f"'{self.tops[0]}' has {rows}", "give every dataset the same "
                                 "number of rows")
            if self._trailing is not None and arr.shape[1:] != self._trailing[top]:
                raise self.error(f"in '{path}', dataset '{top}' rows are {arr.shape[1:]} but the "
                                 f"first file's are {self._trailing[top]}",
                                 "give every file the same row shape")
        if rows == 0:
            raise self.error(f"HDF5 file '{path}' has no rows")
        if len(self.files) == 1:
            self._cache[index] = arrays  # Caffe never reloads a single file; keep it
        return arrays

    def top_shapes(self) -> dict[str, tuple[int, ...]]:
        assert self._trailing is not None
        return {top: (self.batch_size, *self._trailing[top]) for top in self.tops}

    def batches(self) -> Iterator[Batch]:
        """Endless batches in Caffe's order (HDF5DataLayer::Forward_cpu + Next)."""
        file_pass, file_pos, restarts = 0, 0, 0
        order = self.file_order(file_pass)
        arrays = self.load(order[file_pos])
        rows = self._row_order(arrays, restarts)
        cur = 0
        while True:
            parts: dict[str, list[np.ndarray]] = {top: [] for top in self.tops}
            need = self.batch_size
            while need:
                take = min(need, len(rows) - cur)
                idx = rows[cur:cur + take]
                for top in self.tops:
                    parts[top].append(arrays[top][idx])
                cur += take
                need -= take
                if cur == len(rows):  # end of this file: next file (or the same one again)
                    cur = 0
                    restarts += 1
                    if len(self.files) > 1:
                        file_pos += 1
                        if file_pos == len(self.files):
                            file_pos = 0
                            file_pass += 1
                            order = self.file_order(file_pass)
                        arrays = self.load(order[file_pos])
                    rows = self._row_order(arrays, restarts)
            yield {top: torch.from_numpy(np.concatenate(parts[top])) for top in self.tops}

    def _row_order(self, arrays: dict[str, np.ndarray], restarts: int) -> np.ndarray:
        n = arrays[self.tops[0]].shape[0]
        if not self.shuffle:
            return np.arange(n)
        return stream_rng(self.seed, STREAM_SHUFFLE, 2 * restarts + _ROWS).permutation(n)
