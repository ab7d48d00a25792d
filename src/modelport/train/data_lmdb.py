"""Caffe's Data layer (src/caffe/layers/data_layer.cpp) over an LMDB or a LevelDB of Datums.

Records are read in key order (the database cursor's order, which is what Caffe's cursor walks:
bytewise lexicographic for both backends), wrapping to the first key at the end. Each value is
a serialized `Datum`: raw uint8 pixels (C x H x W), `float_data`, or encoded image bytes
(`encoded: true`, decoded by OpenCV; see DataTransformer for force_color / force_gray). The
label top is `datum.label`. `data_param.backend` picks the database, LEVELDB being Caffe's
default (read through plyvel, see data_leveldb.py).
Caffe 1.0's Data layer ignores `data_param.rand_skip` and `force_encoded_color`; so does this.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from modelport.errors import ModelportError
from modelport.formats.caffe import caffe_pb2
from modelport.ir import Layer
from modelport.train.data_source import ItemSource
from modelport.train.transform import DataTransformer, resolve_path

# py-lmdb refuses to open one environment twice in a process (LMDB's locks are per process), so
# every source reading the same LMDB shares one read-only environment per process.
_ENVS: dict[str, tuple[int, tuple[int, int], Any]] = {}
_ENVS_LOCK = threading.Lock()


def _shared_env(path: str) -> Any:
    """This process's read-only environment for the LMDB directory `path`."""
    import lmdb

    key = os.path.realpath(path)
    st = os.stat(os.path.join(path, "data.mdb"))
    files = (st.st_dev, st.st_ino)
    with _ENVS_LOCK:
        entry = _ENVS.get(key)
        if entry is not None and entry[:2] == (os.getpid(), files):
            return entry[2]
        if entry is not None:
            # Inherited through fork (a DataLoader worker must not use its parent's
            # environment) or the database was rebuilt: release this process's copy
            # (lock=False: there is no lock file to disturb).
            try:
                entry[2].close()
            except lmdb.Error:
                pass
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=True,
                        max_readers=256)
        _ENVS[key] = (os.getpid(), files, env)
        return env


class LmdbRecords:
    """Key/value access to one LMDB of Datum records (what DatumSource reads)."""

    backend = "LMDB"

    def __init__(self, path: str) -> None:
        self.path = path

    def keys(self) -> list[bytes]:
        with _shared_env(self.path).begin(buffers=False) as txn:
            return list(txn.cursor().iternext(keys=True, values=False))

    def get(self, key: bytes) -> bytes | None:
        with _shared_env(self.path).begin(buffers=False) as txn:
            value = txn.get(key)
        return None if value is None else bytes(value)

    @staticmethod
    def errors() -> tuple[type[BaseException], ...]:
        import lmdb

        return (lmdb.Error,)


_FOLDER_FIX = ("source must be the database folder, relative to Caffe's working directory "
               "(base_dir)")


class DatumSource(ItemSource):
    """Items of a Data layer reading an LMDB or a LevelDB: (transformed datum, label)."""

    def __init__(self, layer: Layer, transformer: DataTransformer,
                 base_dir: str | os.PathLike[str] | None, seed: int) -> None:
        p = layer.param.data_param
        self.layer_name, self.layer_type = layer.name, layer.type
        self.tops = tuple(layer.tops)
        if len(self.tops) not in (1, 2):
            raise self.error(f"has {len(self.tops)} tops; Data produces data and optionally "
                             "label")
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.error("data_param.batch_size must be positive", "set batch_size")
        self.path = resolve_path(p.source, base_dir)
        self.transformer = transformer
        self.seed = seed
        self.records: LmdbRecords | Any = check_backend(self, p)
        self.keys: list[bytes] = self._call(self.records.keys)
        if not self.keys:
            raise self.error(f"{self.records.backend} '{self.path}' holds no records")

    def _call(self, fn: Any, *args: Any) -> Any:
        """Run a database call; the binding's errors name the database and the layer."""
        backend = self.records.backend
        try:
            return fn(*args)
        except ModelportError as exc:
            raise self.error(str(exc).rstrip(".")) from None
        except ImportError:  # pragma: no cover - part of the data extra
            package = "lmdb" if backend == "LMDB" else "plyvel"
            raise self.error(f"reading {backend} needs the {package} package",
                             f"pip install 'modelport[data]' (or {package})") from None
        except Exception as exc:
            if not isinstance(exc, (OSError, *self.records.errors())):
                raise
            raise self.error(f"cannot read {backend} '{self.path}': {exc}",
                             _FOLDER_FIX) from None

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self, k: int) -> str:
        key = self.keys[k % len(self.keys)].decode("utf-8", "replace")
        return f"record '{key}' of {self.records.backend} '{self.path}'"

    def datum(self, k: int) -> caffe_pb2.Datum:
        key = self.keys[k % len(self.keys)]
        value = self._call(self.records.get, key)
        if value is None:
            raise self.error(f"{self.describe(k)} disappeared while reading")
        try:
            return caffe_pb2.Datum.FromString(value)
        except DecodeError:
            raise self.error(f"{self.describe(k)} is not a serialized Datum",
                             "build the database with Caffe's convert_imageset (or write "
                             "Datum messages)") from None

    def item(self, k: int) -> tuple[np.ndarray, float]:
        datum = self.datum(k)
        rng = self.transform_rng(k, self.seed, self.transformer.needs_rand)
        try:
            data = self.transformer.transform_datum(datum, rng)
        except ModelportError as exc:
            raise self.error(f"{self.describe(k)}: {exc}") from None
        return data, float(datum.label)


# The name this class had while it read LMDB only.
LmdbDatumSource = DatumSource


def check_backend(source: ItemSource, p: caffe_pb2.DataParameter) -> Any:
    """The records of the layer's database (`backend`: LMDB, or LEVELDB, Caffe's default),
    after checking that `source` is a database of that kind."""
    path = getattr(source, "path", p.source)
    if not os.path.isdir(path):
        raise source.error(f"{caffe_pb2.DataParameter.DB.Name(p.backend)} source '{path}' is "
                           "not a directory", _FOLDER_FIX)
    lmdb_here = os.path.isfile(os.path.join(path, "data.mdb"))
    if p.backend == caffe_pb2.DataParameter.LMDB:
        if not lmdb_here:
            from modelport.train.data_leveldb import is_leveldb

            hint = (" but a LevelDB; set `backend: LEVELDB` (or drop `backend`)"
                    if is_leveldb(path) else "")
            raise source.error(f"LMDB source '{path}' holds no data.mdb{hint}", _FOLDER_FIX)
        return LmdbRecords(path)
    from modelport.train.data_leveldb import (
        LevelDbRecords,
        LevelDbUnavailableError,
        is_leveldb,
        require_plyvel,
    )

    if not is_leveldb(path):
        if lmdb_here:
            raise source.error(f"'{path}' holds an LMDB (data.mdb), but the layer does not say "
                               "`backend: LMDB` and Caffe's default backend is LEVELDB",
                               "add `backend: LMDB` to data_param")
        raise source.error(f"LEVELDB source '{path}' is not a LevelDB (no CURRENT file)",
                           _FOLDER_FIX)
    try:
        require_plyvel()
    except LevelDbUnavailableError as exc:
        raise source.error(str(exc).split(". Fix: ")[0],
                           "pip install 'modelport[data]' (or plyvel)") from None
    return LevelDbRecords(path)
