"""Caffe's Data layer (src/caffe/layers/data_layer.cpp) over an LMDB of Datum records.

Records are read in key order (LMDB's cursor order, which is what Caffe's cursor walks),
wrapping to the first key at the end. Each value is a serialized `Datum`: raw uint8 pixels
(C x H x W), `float_data`, or encoded image bytes (`encoded: true`, decoded by OpenCV; see
DataTransformer for force_color / force_gray). The label top is `datum.label`.
Caffe 1.0's Data layer ignores `data_param.rand_skip` and `force_encoded_color`; so does this.
LEVELDB sources are not supported (see `check_backend`).
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
from modelport.train.data_source import STREAM_TRANSFORM, ItemSource, stream_rng
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


LEVELDB_FIX = ("modelport reads LMDB only: convert the LevelDB once, e.g. rebuild it with "
               "Caffe's `convert_imageset --backend=lmdb`, or copy each key/value pair in "
               "Python (plyvel -> lmdb) keeping the key order, then set `backend: LMDB`")


class LmdbDatumSource(ItemSource):
    """Items of a Data layer reading an LMDB: (transformed datum, label)."""

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
        check_backend(self, p)
        with self._open().begin(buffers=False) as txn:
            self.keys: list[bytes] = list(txn.cursor().iternext(keys=True, values=False))
        if not self.keys:
            raise self.error(f"LMDB '{self.path}' holds no records")

    def _open(self) -> Any:
        """This process's environment for the LMDB (shared by every source reading it)."""
        try:
            import lmdb
        except ImportError:  # pragma: no cover - part of the data extra
            raise self.error("reading LMDB needs the lmdb package",
                             "pip install 'modelport[data]' (or lmdb)") from None
        try:
            return _shared_env(self.path)
        except (lmdb.Error, OSError) as exc:
            raise self.error(f"cannot open LMDB '{self.path}': {exc}",
                             "source must be the LMDB directory (holding data.mdb), relative "
                             "to Caffe's working directory (base_dir)") from None

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self, k: int) -> str:
        key = self.keys[k % len(self.keys)].decode("utf-8", "replace")
        return f"record '{key}' of LMDB '{self.path}'"

    def datum(self, k: int) -> caffe_pb2.Datum:
        key = self.keys[k % len(self.keys)]
        with self._open().begin(buffers=False) as txn:
            value = txn.get(key)
        if value is None:
            raise self.error(f"{self.describe(k)} disappeared while reading")
        try:
            return caffe_pb2.Datum.FromString(value)
        except DecodeError:
            raise self.error(f"{self.describe(k)} is not a serialized Datum",
                             "build the LMDB with Caffe's convert_imageset (or write Datum "
                             "messages)") from None

    def item(self, k: int) -> tuple[np.ndarray, float]:
        datum = self.datum(k)
        rng = stream_rng(self.seed, STREAM_TRANSFORM, k) if self.transformer.needs_rand else None
        try:
            data = self.transformer.transform_datum(datum, rng)
        except ModelportError as exc:
            raise self.error(f"{self.describe(k)}: {exc}") from None
        return data, float(datum.label)


def check_backend(source: ItemSource, p: caffe_pb2.DataParameter) -> None:
    """Reject LEVELDB sources (Caffe's default backend) with a conversion recipe."""
    path = getattr(source, "path", p.source)
    if p.backend == caffe_pb2.DataParameter.LMDB:
        if not os.path.isdir(path):
            raise source.error(f"LMDB source '{path}' is not a directory",
                               "source must be the LMDB directory (holding data.mdb), relative "
                               "to Caffe's working directory (base_dir)")
        return
    hint = ""
    if os.path.isfile(os.path.join(path, "data.mdb")):
        hint = (f"; '{path}' holds an LMDB (data.mdb), but the layer does not say "
                "`backend: LMDB` and Caffe's default backend is LEVELDB")
        raise source.error(f"data_param.backend is LEVELDB{hint}", "add `backend: LMDB` to "
                           "data_param")
    raise source.error(f"data_param.backend LEVELDB is not supported{hint}", LEVELDB_FIX)
