"""TensorFlow V2 checkpoints ("tensor bundles") read without TensorFlow, value for value.

A checkpoint is a prefix: `<prefix>.index`, an SSTable (`sstable.py`) mapping each tensor name
to a `BundleEntryProto` (dtype, shape, shard id, offset, size, masked crc32c, slices), plus
`<prefix>.data-NNNNN-of-MMMMM` shards holding the bytes; the entry with the empty key is the
`BundleHeaderProto` (num_shards, endianness, version). This module reproduces TensorFlow's
BundleReader (tensorflow/core/util/tensor_bundle/tensor_bundle.cc):

- Fixed-size dtypes are stored as raw little-endian bytes (size = elements x itemsize). They
  come back as read-only numpy views of the memory-mapped shard (no copy) when the offset is
  aligned for the dtype; an unaligned value, a big-endian bundle (byte-swapped as TF does) and a
  bool (checked to hold only 0/1 first) are the only fixed-size cases that are not plain views
  (bool is a view after the check; the others are copied once). A checkpoint of more than
  MAX_MAPPED_SHARDS shards is not mapped (a mapping holds a file descriptor while its arrays
  live): each value is read into an array of its own.
- DT_STRING: `varint64 length` per element, a 4-byte masked crc32c of the lengths (each length
  checksummed as a little-endian uint32, or uint64 when it does not fit), then the bytes. They
  come back as an object array of `bytes` (a copy).
- The stored crc32c of every value is checked (`verify=False` skips it, for speed), as
  BundleReader::GetValue does, over the bytes as they lie in the file.
- A partitioned variable (tf.compat.v1 partitioners) has a full entry with `slices` and no data;
  each slice is its own entry keyed by checkpoint::EncodeTensorNameSlice (OrderedCode: 0, the
  name, the rank, then signed start and length per dimension, -1 for a full extent). The slices
  are checked to tile the full shape exactly and reassembled into one array (a copy). Like
  `tf.train.list_variables`, the slice entries themselves are not listed.
- The header is checked: a min_consumer above version 1 or version 1 among bad_consumers is
  refused (CheckVersions), and num_shards must match the shard files.

Everything is validated before anything is allocated: a shape's byte count against the entry's
size, offset + size against the shard's size, the shard id against num_shards, the bytes that
must be copied against `modelport.limits.memory_limit()`. Every failure is a one-line
FormatError naming the file and the variable.

Every returned array is read-only (a view of the file or a copy marked so); `np.array(x)` gives
a writable copy.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import message as _message
from google.protobuf import text_format

from modelport import limits, optional
from modelport.errors import ConfigError, FormatError
from modelport.formats.tf import crc
from modelport.formats.tf.source import TFVariable, WeightSource
from modelport.formats.tf.sstable import CorruptDataError, read_table, read_varint
from modelport.schema.tf import checkpoint_state_pb2, tensor_bundle_pb2

__all__ = ["Checkpoint", "CheckpointEntry", "checkpoint_entries", "open_checkpoint",
           "read_checkpoint", "read_checkpoint_source", "resolve_prefix", "slice_key"]

DataType = tensor_bundle_pb2.DataType
BUNDLE_VERSION = 1  # kTensorBundleVersion
_SHARD_RE = re.compile(r"\.data-(\d{5})-of-(\d{5})$")
_MAX_CHECKPOINT_FILE = 1 << 20  # a `checkpoint` text file names a few paths
# Python's mmap keeps a duplicate of the file descriptor while any array views the mapping;
# beyond this many shards values are read into arrays of their own instead (one copy each).
MAX_MAPPED_SHARDS = 256

# DataType -> numpy dtype (str) or ml_dtypes name; strings are object arrays of bytes.
_NUMPY: dict[int, str] = {
    DataType.DT_FLOAT: "float32", DataType.DT_DOUBLE: "float64", DataType.DT_HALF: "float16",
    DataType.DT_INT8: "int8", DataType.DT_INT16: "int16", DataType.DT_INT32: "int32",
    DataType.DT_INT64: "int64", DataType.DT_UINT8: "uint8", DataType.DT_UINT16: "uint16",
    DataType.DT_UINT32: "uint32", DataType.DT_UINT64: "uint64", DataType.DT_BOOL: "bool",
    DataType.DT_COMPLEX64: "complex64", DataType.DT_COMPLEX128: "complex128",
}
_ML_DTYPES: dict[int, str] = {
    DataType.DT_BFLOAT16: "bfloat16", DataType.DT_FLOAT8_E5M2: "float8_e5m2",
    DataType.DT_FLOAT8_E4M3FN: "float8_e4m3fn", DataType.DT_FLOAT8_E4M3FNUZ: "float8_e4m3fnuz",
    DataType.DT_FLOAT8_E4M3B11FNUZ: "float8_e4m3b11fnuz",
    DataType.DT_FLOAT8_E5M2FNUZ: "float8_e5m2fnuz",
}


def dtype_name(dtype: int) -> str:
    """TensorFlow's name of a DataType value ("DT_FLOAT"), or "DataType(<n>)" when unknown."""
    try:
        return DataType.Name(dtype)  # type: ignore[arg-type]  # any int may come from a file
    except ValueError:
        return f"DataType({dtype})"


def numpy_dtype(dtype: int) -> np.dtype[Any] | None:
    """The numpy dtype TensorFlow's reader returns for a DataType (object for DT_STRING), or
    None when modelport cannot represent it (quantized, resource, variant, int4, ...)."""
    if dtype in _NUMPY:
        return np.dtype(_NUMPY[dtype])
    if dtype == DataType.DT_STRING:
        return np.dtype(object)
    if dtype in _ML_DTYPES:
        ml_dtypes = optional.require("ml_dtypes", "tf", f"reading {_ML_DTYPES[dtype]} tensors")
        return np.dtype(getattr(ml_dtypes, _ML_DTYPES[dtype]))
    return None


def _layout_dtype(dtype: int) -> np.dtype[Any] | None:
    """A dtype with the stored item size, without importing ml_dtypes (for validation)."""
    if dtype == DataType.DT_BFLOAT16:
        return np.dtype("u2")
    if dtype in _ML_DTYPES:
        return np.dtype("u1")
    return numpy_dtype(dtype)


@dataclass(frozen=True)
class CheckpointEntry:
    """One variable of a checkpoint, as its `.index` describes it (no data read).

    `slices` is empty for a whole tensor; for a partitioned variable it lists each slice as
    ((start, length), ...) per dimension, and `shard`/`offset` are meaningless (-1/0) while
    `size` is the sum of its slices' sizes."""

    name: str
    dtype: str  # TensorFlow's DataType name, e.g. "DT_FLOAT"
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int  # as stored (masked)
    slices: tuple[tuple[tuple[int, int], ...], ...] = ()
    key: bytes = b""

    @property
    def numpy_dtype(self) -> np.dtype[Any] | None:
        return numpy_dtype(getattr(DataType, self.dtype, -1))


# ------------------------------------------------------------------------- slice keys


def _num_increasing(value: int) -> bytes:
    """OrderedCode::WriteNumIncreasing: a length byte, then the big-endian bytes (no leading
    zeros)."""
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return bytes([len(body)]) + body


_HEADER_BITS = {1: (0x80, 0), 2: (0xC0, 0), 3: (0xE0, 0), 4: (0xF0, 0), 5: (0xF8, 0),
                6: (0xFC, 0), 7: (0xFE, 0), 8: (0xFF, 0), 9: (0xFF, 0x80), 10: (0xFF, 0xC0)}


def _signed_num_increasing(value: int) -> bytes:
    """OrderedCode::WriteSignedNumIncreasing: sign bit, unary length, then the value (two's
    complement), 1 to 10 bytes."""
    x = ~value if value < 0 else value
    if x < 64:
        return bytes([(0x80 ^ value) & 0xFF])
    length = x.bit_length() // 7 + 1
    buf = bytearray(value.to_bytes(10, "big", signed=True))[10 - length:]
    first, second = _HEADER_BITS[length]
    buf[0] ^= first
    buf[1] ^= second
    return bytes(buf)


def slice_key(name: bytes, extents: Iterable[tuple[int, int]]) -> bytes:
    """checkpoint::EncodeTensorNameSlice: the index key of one slice of a partitioned variable
    (`extents`: (start, length) per dimension, length -1 for a full dimension)."""
    dims = list(extents)
    out = [_num_increasing(0), _escape(name), _num_increasing(len(dims))]
    for start, length in dims:
        out.append(_signed_num_increasing(start))
        out.append(_signed_num_increasing(length))
    return b"".join(out)


def _escape(value: bytes) -> bytes:
    escaped = bytearray()
    for byte in value:
        if byte == 0x00:
            escaped += b"\x00\xff"
        elif byte == 0xFF:
            escaped += b"\xff\x00"
        else:
            escaped.append(byte)
    return bytes(escaped) + b"\x00\x01"


# --------------------------------------------------------------------- prefix resolution


def _nearby(folder: Path, stem: str = "") -> str:
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return f"folder {folder} cannot be listed"
    indexes = [n[:-len(".index")] for n in names if n.endswith(".index")]
    similar = [n for n in indexes if stem and n.startswith(stem)]
    if similar:
        return f"checkpoint prefixes there starting with '{stem}': " + ", ".join(similar[:6])
    others = [n for n in names if stem and n.startswith(stem)]
    if others:
        return f"files there starting with '{stem}': " + ", ".join(others[:6])
    if indexes:
        return "checkpoint prefixes there: " + ", ".join(indexes[:6])
    return f"no checkpoint (.index file) in {folder}"


def _read_state(path: Path) -> Path:
    """The prefix named by a `checkpoint` file's model_checkpoint_path (relative to its folder
    unless absolute)."""
    try:
        size = path.stat().st_size
        if size > _MAX_CHECKPOINT_FILE:
            raise FormatError(f"{path}: {size} bytes, too large for a `checkpoint` state file "
                              "(it names a few checkpoint paths)")
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    state = checkpoint_state_pb2.CheckpointState()
    try:
        text_format.Parse(text, state, allow_unknown_field=True)
    except RecursionError:  # protobuf's text parser recurses once per level of braces
        raise FormatError(f"{path}: not a TensorFlow `checkpoint` state file: its braces nest "
                          "too deeply") from None
    except (text_format.ParseError, UnicodeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormatError(f"{path}: not a TensorFlow `checkpoint` state file: {first}") from None
    latest = state.model_checkpoint_path
    if not latest:
        raise FormatError(f"{path}: names no model_checkpoint_path")
    prefix = Path(latest)
    return prefix if prefix.is_absolute() else path.parent / prefix


def resolve_prefix(path: str | os.PathLike[str]) -> Path:
    """The checkpoint prefix meant by `path`: a prefix, its `.index` / `.data-*` / `.meta`
    file, a `checkpoint` state file, or a folder holding one (its latest checkpoint) or a single
    checkpoint. FormatError saying what is missing and what exists nearby."""
    given = Path(path)
    via = ""
    if given.is_dir():
        state = given / "checkpoint"
        if state.is_file():
            prefix, via = _read_state(state), f" (named by {state})"
        else:
            indexes = sorted(given.glob("*.index"))
            if len(indexes) != 1:
                found = ", ".join(p.name for p in indexes[:6]) or "no .index file"
                raise FormatError(f"{given}: a folder without a `checkpoint` file and "
                                  f"{len(indexes) or 'no'} checkpoints ({found}). Fix: give "
                                  "the checkpoint prefix (the .index path without .index)")
            prefix = indexes[0].with_suffix("")
    elif given.name == "checkpoint" and given.is_file():
        prefix, via = _read_state(given), f" (named by {given})"
    elif given.name.endswith((".index", ".meta")):
        prefix = given.with_suffix("")
    elif _SHARD_RE.search(given.name):
        prefix = given.with_name(_SHARD_RE.sub("", given.name))
    else:
        prefix = given
    index = prefix.with_name(prefix.name + ".index")
    if not index.is_file():
        what = "is missing" if not index.exists() else "is not a file"
        hint = _nearby(prefix.parent, prefix.name)
        v1 = ""
        if prefix.is_file() and not via:
            v1 = (" (a single-file checkpoint is TensorFlow's V1 format, which modelport does "
                  "not read; re-save with tf.compat.v1.train.Saver() in TF >= 1.2)")
        raise FormatError(f"no TensorFlow checkpoint at {prefix}{via}: {index.name} {what}"
                          f"{v1}; {hint}")
    return prefix


# ---------------------------------------------------------------------------- the reader


def _shape(entry: Any) -> tuple[int, ...] | None:
    if entry.shape.unknown_rank:
        return None
    return tuple(int(d.size) for d in entry.shape.dim)


class Checkpoint:
    """An open checkpoint: its header checked, its entries parsed, its shards mapped on first
    use. `entries` lists the variables as `tf.train.list_variables` does (index order, slice
    entries of partitioned variables left out); `read(name)` returns one value."""

    def __init__(self, path: str | os.PathLike[str], *, verify: bool = True) -> None:
        self.prefix = resolve_prefix(path)
        self.index_path = self.prefix.with_name(self.prefix.name + ".index")
        self.verify = verify
        self._maps: dict[int, mmap.mmap] = {}
        items = read_table(self.index_path)
        if not items or items[0][0] != b"":
            raise FormatError(f"{self.index_path}: no header entry (the empty key) in the "
                              "index: not a TensorFlow V2 checkpoint")
        header = tensor_bundle_pb2.BundleHeaderProto()
        self._parse(header, items[0][1], "the header entry")
        self._check_header(header)
        self.big_endian = header.endianness == tensor_bundle_pb2.BundleHeaderProto.BIG
        self.num_shards = int(header.num_shards)
        self._raw: dict[bytes, Any] = {}
        for key, value in items[1:]:
            entry = tensor_bundle_pb2.BundleEntryProto()
            self._parse(entry, value, f"the entry of {self._show(key)}")
            self._raw[key] = entry
        self.shard_paths = self._shards()
        self._sizes = [p.stat().st_size for p in self.shard_paths]
        self._parts: dict[bytes, list[tuple[tuple[tuple[int, int], ...], bytes]]] = {}
        self.entries = self._entries()
        self._by_name = {e.name: e for e in self.entries}

    # -- structure --------------------------------------------------------------------

    @staticmethod
    def _show(key: bytes) -> str:
        return "'" + key.decode("utf-8", "backslashreplace") + "'"

    def _parse(self, msg: _message.Message, data: bytes, what: str) -> None:
        try:
            msg.ParseFromString(data)
        except _message.DecodeError:
            raise FormatError(f"{self.index_path}: {what} is not a valid protobuf record "
                              "(corrupt index)") from None

    def _check_header(self, header: Any) -> None:
        version = header.version
        where = f"{self.index_path}: "
        if version.min_consumer > BUNDLE_VERSION:
            raise FormatError(f"{where}written by a newer TensorFlow (checkpoint format "
                              f"min_consumer {version.min_consumer}, this reader implements "
                              f"version {BUNDLE_VERSION})")
        if BUNDLE_VERSION in version.bad_consumers:
            raise FormatError(f"{where}the checkpoint declares format version "
                              f"{BUNDLE_VERSION} unable to read it (bad_consumers)")
        if header.num_shards < 1:
            raise FormatError(f"{where}the header claims {header.num_shards} data shards")
        if header.endianness not in (0, 1):
            raise FormatError(f"{where}unknown endianness {header.endianness} in the header")

    def _shards(self) -> list[Path]:
        n = self.num_shards
        folder, stem = self.prefix.parent, self.prefix.name
        present = sorted(p.name for p in folder.glob(glob_escape(stem) + ".data-*"))
        if n > len(present):
            listing = ", ".join(present[:4]) + (", ..." if len(present) > 4 else "")
            raise FormatError(f"{self.index_path}: the header names {n} data shards but only "
                              f"{len(present)} exist ({listing or 'none'})")
        paths = [folder / f"{stem}.data-{i:05d}-of-{n:05d}" for i in range(n)]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise FormatError(f"{self.index_path}: data shard {missing[0]} is missing"
                              f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}"
                              f"; present: {', '.join(present[:4])}")
        return paths

    def _entries(self) -> list[CheckpointEntry]:
        sliced: set[bytes] = set()
        out: list[CheckpointEntry] = []
        for key, raw in self._raw.items():
            if raw.slices:
                entry = self._sliced_entry(key, raw)
                sliced.update(part for _, part in self._parts[key])
            else:
                entry = self._plain_entry(key, raw)
            out.append(entry)
        return [e for e in out if e.key not in sliced]

    def _fail(self, key: bytes, what: str, path: Path | None = None) -> FormatError:
        return FormatError(f"{path or self.index_path}: variable {self._show(key)}: {what}")

    def _checked_shape(self, key: bytes, raw: Any, itemsize: int = 1) -> tuple[int, ...]:
        shape = _shape(raw)
        if shape is None:
            raise self._fail(key, "the stored shape has unknown rank")
        problem = limits.shape_problem(shape, itemsize)
        if problem is not None:
            raise self._fail(key, f"the stored shape {problem}")
        return shape

    def _plain_entry(self, key: bytes, raw: Any) -> CheckpointEntry:
        dtype = _layout_dtype(raw.dtype)
        shape = self._checked_shape(key, raw, dtype.itemsize if dtype is not None else 1)
        shard, offset, size = int(raw.shard_id), int(raw.offset), int(raw.size)
        if not 0 <= shard < self.num_shards:
            raise self._fail(key, f"shard id {shard} is out of range (the header names "
                                  f"{self.num_shards} shards)")
        path, shard_size = self.shard_paths[shard], self._sizes[shard]
        if offset < 0 or size < 0 or offset + size > shard_size:
            raise self._fail(key, f"its {size} bytes at offset {offset} lie outside the "
                                  f"{shard_size}-byte shard (truncated or corrupt)", path)
        count = math.prod(shape)
        if dtype is not None and dtype.kind != "O" and size != count * dtype.itemsize:
            raise self._fail(key, f"shape {list(shape)} of {dtype_name(raw.dtype)} needs "
                                  f"{count * dtype.itemsize} bytes but the entry stores {size}")
        if dtype is not None and dtype.kind == "O" and count and size < count + 4:
            raise self._fail(key, f"{count} strings cannot fit in {size} bytes")
        return CheckpointEntry(self._show(key)[1:-1], dtype_name(raw.dtype), shape, shard,
                               offset, size, int(raw.crc32c), (), key)

    def _slice_extents(self, key: bytes, raw: Any) -> list[tuple[tuple[int, int | None], ...]]:
        shape = _shape(raw) or ()
        out = []
        for proto in raw.slices:
            if len(proto.extent) != len(shape):
                raise self._fail(key, f"a slice has {len(proto.extent)} extents for a "
                                      f"{len(shape)}-d tensor")
            ext = tuple((int(e.start), int(e.length) if e.HasField("length") else None)
                        for e in proto.extent)
            out.append(ext)
        return out

    def _sliced_entry(self, key: bytes, raw: Any) -> CheckpointEntry:
        shape = self._checked_shape(key, raw)
        boxes: list[tuple[tuple[int, int], ...]] = []
        total = 0
        for ext in self._slice_extents(key, raw):
            box = tuple((s, d - s if n is None else n) for (s, n), d in zip(ext, shape))
            if any(s < 0 or n < 0 or s + n > d for (s, n), d in zip(box, shape)):
                raise self._fail(key, f"slice {_box_text(box)} lies outside its shape "
                                      f"{list(shape)}")
            part_key = slice_key(key, ((s, -1 if n is None else n) for s, n in ext))
            part = self._raw.get(part_key)
            if part is None:
                raise self._fail(key, f"the entry of its slice {_box_text(box)} is missing")
            if part.slices or part.dtype != raw.dtype or _shape(part) != tuple(n for _, n in box):
                raise self._fail(key, f"its slice {_box_text(box)} is stored with dtype "
                                      f"{dtype_name(part.dtype)} and shape "
                                      f"{list(_shape(part) or [])}")
            total += self._plain_entry(part_key, part).size
            boxes.append(box)
            self._parts.setdefault(key, []).append((box, part_key))
        _check_tiling(boxes, shape, lambda what: self._fail(key, what))
        return CheckpointEntry(self._show(key)[1:-1], dtype_name(raw.dtype), shape, -1, 0,
                               total, 0, tuple(boxes), key)

    # -- values -----------------------------------------------------------------------

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Unmap the shards not referenced by a returned array (those stay valid: the arrays
        keep their mapping alive)."""
        for shard, mapped in list(self._maps.items()):
            try:
                mapped.close()
            except BufferError:
                pass  # arrays still view it; it is unmapped when they go
            del self._maps[shard]

    def _map(self, shard: int) -> mmap.mmap:
        mapped = self._maps.get(shard)
        if mapped is None:
            path = self.shard_paths[shard]
            try:
                with open(path, "rb") as fh:
                    mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise FormatError(f"{path}: cannot map: {exc}") from None
            if len(mapped) != self._sizes[shard]:
                raise FormatError(f"{path}: changed size while being read")
            self._maps[shard] = mapped
        return mapped

    def copy_bytes(self, entry: CheckpointEntry) -> int:
        """The bytes `read(entry)` allocates (0 for a view of the file)."""
        dtype = entry.numpy_dtype
        count = math.prod(entry.shape)
        read = entry.size if self.num_shards > MAX_MAPPED_SHARDS and not entry.slices else 0
        if entry.slices or dtype is None or dtype.kind == "O" or self.big_endian:
            per = 1 if dtype is None else 40 if dtype.kind == "O" else dtype.itemsize
            strings = entry.size if dtype is not None and dtype.kind == "O" else 0
            return read + count * per + strings
        return read or (0 if entry.offset % dtype.alignment == 0 else entry.size)

    def read(self, name: str | CheckpointEntry) -> np.ndarray:
        """The value of one variable, exactly as stored (see the module docstring)."""
        entry = name if isinstance(name, CheckpointEntry) else self._by_name.get(name)
        if entry is None:
            raise FormatError(f"{self.index_path}: no variable '{name}' in this checkpoint")
        dtype = entry.numpy_dtype
        if dtype is None:
            raise self._fail(entry.key, f"dtype {entry.dtype} cannot be read into numpy by "
                                        "modelport (quantized, resource, variant and 4-bit "
                                        "tensors are not supported). Fix: read the other "
                                        "variables (names=[...]), or use "
                                        "read_checkpoint_source, which leaves such tensors out")
        if self.copy_bytes(entry):
            _check_memory(self, [entry])
        if entry.slices:
            value = self._assemble(entry, dtype)
        else:
            value = self._value(entry, dtype)
        value.flags.writeable = False
        return value

    def _assemble(self, entry: CheckpointEntry, dtype: np.dtype[Any]) -> np.ndarray:
        full = np.empty(entry.shape, dtype)
        for box, key in self._parts[entry.key]:
            part = self._plain_entry(key, self._raw[key])
            full[tuple(slice(s, s + n) for s, n in box)] = self._value(part, dtype)
        return full

    def _region(self, entry: CheckpointEntry) -> tuple[Any, int]:
        """(buffer, offset of the entry's bytes in it): the shard's mapping, or, when there are
        more shards than MAX_MAPPED_SHARDS (each mapping holds a file descriptor while arrays
        view it), the entry's bytes read into an array of their own."""
        if self.num_shards <= MAX_MAPPED_SHARDS:
            return self._map(entry.shard), entry.offset
        path = self.shard_paths[entry.shard]
        buffer = np.empty(entry.size, np.uint8)
        try:
            with open(path, "rb") as fh:
                fh.seek(entry.offset)
                got = fh.readinto(buffer.data)
        except OSError as exc:
            raise FormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if got != entry.size:
            raise self._fail(entry.key, f"only {got} of its {entry.size} bytes could be read "
                                        "(the shard changed size)", path)
        return buffer, 0

    def _value(self, entry: CheckpointEntry, dtype: np.dtype[Any]) -> np.ndarray:
        mapped, start = self._region(entry)
        size = entry.size
        if dtype.kind == "O":
            return self._strings(entry, bytes(memoryview(mapped)[start:start + size]))
        if self.verify:
            _populate(mapped, start, size)
            actual = crc.crc32c(memoryview(mapped)[start:start + size])
            self._check_crc(entry, actual)
        count = math.prod(entry.shape)
        if self.big_endian and dtype.itemsize > 1:
            # Swapped per item (per component for complex), as ByteSwapTensor does; through
            # unsigned ints, since ml_dtypes' types have no big-endian form.
            item = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
            raw = np.frombuffer(mapped, f"<u{item}", size // item, start)
            return raw.byteswap().view(dtype).reshape(entry.shape)
        if dtype == np.bool_:
            raw = np.frombuffer(mapped, np.uint8, count, start)
            if count and int(raw.max()) > 1:
                raise self._fail(entry.key, "a bool value is neither 0 nor 1 (corrupt data)",
                                 self.shard_paths[entry.shard])
            return raw.view(np.bool_).reshape(entry.shape)
        value = np.frombuffer(mapped, dtype, count, start)
        if not value.flags.aligned:
            value = value.copy()
        return value.reshape(entry.shape)

    def _check_crc(self, entry: CheckpointEntry, actual: int) -> None:
        expected = crc.unmask(entry.crc32c)
        if actual != expected:
            raise self._fail(entry.key, f"its {entry.size} bytes at offset {entry.offset} "
                                        f"fail the crc32c check (stored {expected:08x}, "
                                        f"computed {actual:08x}): the file is corrupt",
                             self.shard_paths[entry.shard])

    def _strings(self, entry: CheckpointEntry, data: bytes) -> np.ndarray:
        count = math.prod(entry.shape)
        out = np.empty(count, dtype=object)
        if entry.size == 0 and count == 0:
            return out.reshape(entry.shape)
        path = self.shard_paths[entry.shard]
        pos = 0
        lengths = []
        for _ in range(count):
            try:
                length, pos = read_varint(data, pos, len(data))
            except CorruptDataError:
                raise self._fail(entry.key, "its string lengths run past the entry's bytes",
                                 path) from None
            lengths.append(length)
        order = ">" if self.big_endian else "<"
        packed = b"".join(struct.pack(order + ("I" if n <= 0xFFFFFFFF else "Q"), n)
                          for n in lengths)
        if pos + 4 + sum(lengths) != entry.size:
            raise self._fail(entry.key, f"{count} strings of {sum(lengths)} bytes with their "
                                        f"lengths do not fill the entry's {entry.size} bytes",
                             path)
        (stored_lengths_crc,) = struct.unpack_from(order + "I", data, pos)
        if self.verify:
            running = crc.crc32c(packed)
            if crc.unmask(stored_lengths_crc) != running:
                raise self._fail(entry.key, "the checksum of its string lengths does not "
                                            "match: the file is corrupt", path)
            running = crc.crc32c(data[pos:], running)
            self._check_crc(entry, running)
        pos += 4
        for i, length in enumerate(lengths):
            out[i] = data[pos:pos + length]
            pos += length
        return out.reshape(entry.shape)

    def read_all(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """{name: value} for `names` (default: every entry), after checking the copies they
        need against the memory limit."""
        chosen = self.entries if names is None else [self._lookup(n) for n in names]
        _check_memory(self, chosen)
        return {e.name: self.read(e) for e in chosen}

    def _lookup(self, name: str) -> CheckpointEntry:
        entry = self._by_name.get(name)
        if entry is None:
            raise FormatError(f"{self.index_path}: no variable '{name}' in this checkpoint")
        return entry


# madvise(MADV_POPULATE_READ) (Linux >= 5.14) maps a range's pages in one call instead of one
# page fault per few pages; elsewhere, or on older kernels, the faults happen as usual.
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22 if os.uname().sysname == "Linux"
                              else None) if hasattr(os, "uname") else None


def _populate(mapped: Any, start: int, size: int) -> None:
    if _MADV_POPULATE_READ is None or size < (1 << 20) or not isinstance(mapped, mmap.mmap):
        return
    lo = start - start % mmap.PAGESIZE
    try:
        mapped.madvise(_MADV_POPULATE_READ, lo, start + size - lo)
    except (OSError, ValueError):
        pass


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _box_text(box: tuple[tuple[int, int], ...]) -> str:
    return "[" + ", ".join(f"{s}:{s + n}" for s, n in box) + "]"


MAX_SLICES = 100_000  # TF's partitioners make tens to thousands; the overlap check is O(n^2)


def _check_tiling(boxes: list[tuple[tuple[int, int], ...]], shape: tuple[int, ...],
                  fail: Any) -> None:
    """The slices must cover the full shape exactly once: no two overlap, and their volumes add
    up to the full one (TensorSliceSet's overlap check, QueryMeta's 'sufficient slices')."""
    if len(boxes) > MAX_SLICES:
        raise fail(f"{len(boxes)} slices, more than the {MAX_SLICES:,} modelport reads")
    if boxes and shape:
        starts = np.array([[s for s, _ in box] for box in boxes], dtype=object)
        ends = np.array([[s + n for s, n in box] for box in boxes], dtype=object)
        for i in range(1, len(boxes)):
            hit = ((np.maximum(starts[:i], starts[i]) < np.minimum(ends[:i], ends[i]))
                   .all(axis=1))
            if hit.any():
                j = int(np.argmax(hit))
                raise fail(f"its slices {_box_text(boxes[i])} and {_box_text(boxes[j])} "
                           "overlap")
    elif len(boxes) > 1:
        raise fail(f"its {len(boxes)} slices of a scalar overlap")
    volume = sum(math.prod(n for _, n in box) for box in boxes)
    if volume != math.prod(shape):
        raise fail(f"its {len(boxes)} slices cover {volume} of the {math.prod(shape)} elements "
                   f"of shape {list(shape)}")


def _check_memory(ckpt: Checkpoint, entries: Iterable[CheckpointEntry]) -> None:
    limit = limits.memory_limit()
    if limit is None:
        return
    needed = sum(ckpt.copy_bytes(e) for e in entries)
    if needed > limit:
        raise ConfigError(f"{ckpt.prefix}: reading it needs {limits.format_bytes(needed)} of "
                          f"copies (partitioned, string or unaligned values), over the memory "
                          f"limit of {limits.format_bytes(limit)}. Fix: read fewer variables "
                          f"(names=...), or raise {limits.MEMORY_ENV} (a size such as 64G, a "
                          "percentage of RAM such as 95%, or off)")


# ------------------------------------------------------------------------------ the API


def open_checkpoint(path: str | os.PathLike[str], *, verify: bool = True) -> Checkpoint:
    """Open a checkpoint (prefix, `.index`, `checkpoint` file or folder: `resolve_prefix`)."""
    return Checkpoint(path, verify=verify)


def checkpoint_entries(path: str | os.PathLike[str]) -> list[CheckpointEntry]:
    """Every variable's name, dtype, shape and location, as `tf.train.list_variables` lists
    them, validated against the shard files but without reading any value."""
    return Checkpoint(path).entries


def read_checkpoint(path: str | os.PathLike[str], *, names: Iterable[str] | None = None,
                    verify: bool = True) -> dict[str, np.ndarray]:
    """{name: value} with TensorFlow's exact values and dtypes (what
    `tf.train.load_checkpoint(prefix).get_tensor(name)` returns; string tensors as object
    arrays of bytes, scalars as 0-d arrays), read-only, mostly zero-copy views of the mapped
    shards. `verify=False` skips the crc32c checks."""
    return Checkpoint(path, verify=verify).read_all(names)


def read_checkpoint_source(path: str | os.PathLike[str], *,
                           verify: bool = True) -> WeightSource:
    """The checkpoint as a `WeightSource` (kind "tf-checkpoint", no layers): every variable
    numpy can hold, in index order; variables of other dtypes (resource, variant, quantized)
    are left out and named in `notes`."""
    ckpt = Checkpoint(path, verify=verify)
    readable = [e for e in ckpt.entries if e.numpy_dtype is not None]
    skipped = [e for e in ckpt.entries if e.numpy_dtype is None]
    values = ckpt.read_all(e.name for e in readable)
    notes = [f"left out {e.name} ({e.dtype}): not a numeric tensor" for e in skipped]
    return WeightSource(path=ckpt.prefix, kind="tf-checkpoint",
                        variables={n: TFVariable(n, v) for n, v in values.items()},
                        layers=None, names_from="names", notes=notes)

