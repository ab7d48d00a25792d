r"""`open_weights(path)`: any TensorFlow / Keras weight file into a `WeightSource`.

Dispatch is by content first, then by name:

- a zip (`PK\x03\x04`): a `.keras` archive (`keras_archive`; a zip without `config.json` and
  `model.weights.h5` is refused there);
- an HDF5 file (its signature at offset 0 or after a user block of 512, 1024, 2048, ...
  bytes): Keras weights (`keras_h5`: Keras 3 `.weights.h5`, Keras 2 full-model or weights-only
  `.h5`; any other HDF5 file is refused there);
- anything else: a TF checkpoint (`checkpoint`: a prefix, its `.index` or `.data-*` file, its
  folder or the `checkpoint` state file). An object-based (TF2) checkpoint, one holding
  `_CHECKPOINTABLE_OBJECT_GRAPH`, has its layers recovered (`object_graph`); a name-based one
  (TF1 Saver, TF-slim) is returned as a flat list of variables (`layers` None).

Sharded Keras 3 weights (`model.weights.json` + shards, `save_weights(max_shard_size=...)`)
are refused with a FormatError saying so. A file whose suffix promises one format (`.keras`,
`.h5`, `.hdf5`) but whose content is none of them is a FormatError naming the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from modelport.errors import FormatError
from modelport.formats.tf.keras_archive import read_keras_archive
from modelport.formats.tf.keras_h5 import HDF5_SIGNATURE, read_keras_h5
from modelport.formats.tf.object_graph import OBJECT_GRAPH_KEY, read_object_graph_source
from modelport.formats.tf.source import WeightSource

__all__ = ["open_weights", "sniff"]

ZIP_SIGNATURE = b"PK\x03\x04"
_DATA_SHARD = re.compile(r"\.data-\d{5}-of-\d{5}$")
_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def sniff(path: Path) -> str | None:
    """"zip", "hdf5", or None for a regular file by its first bytes (HDF5 looks for its
    signature at 0, 512, 1024, 2048, ...: a user block moves it)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if head[:4] == ZIP_SIGNATURE:
                return "zip"
            if head == HDF5_SIGNATURE:
                return "hdf5"
            size = os.fstat(fh.fileno()).st_size
            at = 512
            while at + 8 <= size:
                fh.seek(at)
                if fh.read(8) == HDF5_SIGNATURE:
                    return "hdf5"
                at *= 2
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the file ({exc.strerror or exc}).") from None
    return None


def open_weights(path: str | os.PathLike[str]) -> WeightSource:
    """Read the TF checkpoint, Keras `.h5` / `.weights.h5` or `.keras` archive at `path`."""
    p = Path(path)
    if p.is_file():
        kind = sniff(p)
        if kind == "zip":
            return read_keras_archive(p)
        if kind == "hdf5":
            return read_keras_h5(p)
        if p.name.lower().endswith(".weights.json"):
            raise FormatError(f"{p}: sharded Keras 3 weights (a .weights.json map of "
                              "*_NNNNN.weights.h5 shards) are not supported yet. Fix: save "
                              "without max_shard_size (model.save_weights('m.weights.h5')).")
        if p.name.lower().endswith(_KERAS_SUFFIXES):
            what = "a zip (.keras archive)" if p.suffix.lower() == ".keras" else "an HDF5 file"
            raise FormatError(f"{p}: not {what}: the file starts with "
                              f"{_first_bytes(p)!r}.")
    return read_tf_checkpoint(p)


def _first_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(8)


def read_tf_checkpoint(path: Path) -> WeightSource:
    """A TF checkpoint as a WeightSource, with layers when it is object-based."""
    from modelport.formats.tf.checkpoint import read_checkpoint_source

    if path.is_file() and _DATA_SHARD.search(path.name):
        path = path.with_name(_DATA_SHARD.sub("", path.name))
    source = read_checkpoint_source(path)
    graph = source.variables.get(OBJECT_GRAPH_KEY)
    if graph is None:
        return source
    values = {name: var.value for name, var in source.variables.items()}
    layered = read_object_graph_source(source.path, values)
    layered.notes = source.notes + layered.notes
    return layered
