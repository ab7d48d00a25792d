"""Helpers for the TF checkpoint tests: the committed fixtures (made by real TensorFlow,
tools/make_tf_fixtures.py), TensorFlow's own reading of them (expected.json / expected.npz),
and a minimal LevelDB-table writer to make corrupted or edited `.index` files in tmp_path."""

from __future__ import annotations

import json
import pathlib
import shutil
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from modelport.formats.tf import crc
from modelport.formats.tf.sstable import MAGIC, read_table
from modelport.schema.tf import tensor_bundle_pb2

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "tf"
CHECKPOINTS = ("slim", "tf2")


def expected(name: str) -> tuple[pathlib.Path, list[dict[str, Any]], dict[str, np.ndarray]]:
    """(prefix, variables in list_variables order, {name: value}) as TensorFlow read them."""
    folder = FIXTURES / name
    meta = json.loads((folder / "expected.json").read_text())
    arrays = np.load(folder / "expected.npz", allow_pickle=False)
    values: dict[str, np.ndarray] = {}
    for var in meta["variables"]:
        if "dtype" not in var:
            continue  # a DT_VARIANT tensor: numpy (and TF's get_tensor) cannot hold it
        if "hex" in var:
            flat = np.empty(len(var["hex"]), dtype=object)
            flat[:] = [bytes.fromhex(h) for h in var["hex"]]
            values[var["name"]] = flat.reshape(var["shape"])
        elif var["dtype"] == "bfloat16":
            import ml_dtypes

            values[var["name"]] = arrays[var["npz"]].view(ml_dtypes.bfloat16)
        else:
            values[var["name"]] = arrays[var["npz"]]
    return folder / meta["prefix"], meta["variables"], values


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes (NaN payloads and -0.0 included); strings element-wise."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return [bytes(x) for x in a.reshape(-1)] == [bytes(x) for x in b.reshape(-1)]
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def copy_fixture(name: str, tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of fixture `name` in tmp_path; returns its prefix."""
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    prefix, _, _ = expected(name)
    return folder / prefix.name


# ---------------------------------------------------------------------- table writing


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int = 4) -> bytes:
    body = bytearray()
    restarts = []
    previous = b""
    for i, (key, value) in enumerate(entries):
        if i % restart_interval == 0:
            restarts.append(len(body))
            shared = 0
        else:
            shared = 0
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        body += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        body += key[shared:] + value
        previous = key
    if not restarts:
        restarts = [0]
    body += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(body)


def write_table(path: pathlib.Path, items: list[tuple[bytes, bytes]],
                block_entries: int = 7, compression: int = 0) -> None:
    """A LevelDB table of `items` (sorted keys): data blocks of `block_entries` entries, an
    empty metaindex, an index block, the footer. `compression` is only written into the data
    blocks' trailers (the bytes stay uncompressed)."""
    out = bytearray()

    def put(block: bytes, kind: int = 0) -> tuple[int, int]:
        offset = len(out)
        out.extend(block)
        trailer_type = bytes([kind])
        out.extend(trailer_type + struct.pack("<I", crc.mask(crc.crc32c(block + trailer_type))))
        return offset, len(block)

    index = []
    for start in range(0, len(items), block_entries):
        chunk = items[start:start + block_entries]
        offset, size = put(_block(chunk), compression)
        index.append((chunk[-1][0], _varint(offset) + _varint(size)))
    meta_handle = put(_block([]))
    index_handle = put(_block(index, restart_interval=1))
    footer = b"".join(_varint(v) for v in (*meta_handle, *index_handle))
    out += footer + b"\x00" * (40 - len(footer)) + struct.pack("<Q", MAGIC)
    path.write_bytes(bytes(out))


def edit_index(prefix: pathlib.Path, edit: Callable[[list[tuple[bytes, Any]]], None]) -> None:
    """Rewrite `<prefix>.index` after `edit` changed its (key, proto) list in place (the header
    is a BundleHeaderProto, every other value a BundleEntryProto)."""
    index = prefix.with_name(prefix.name + ".index")
    records: list[tuple[bytes, Any]] = []
    for key, value in read_table(index):
        cls = (tensor_bundle_pb2.BundleHeaderProto if key == b""
               else tensor_bundle_pb2.BundleEntryProto)
        records.append((key, cls.FromString(value)))
    edit(records)
    items = sorted((k, v.SerializeToString()) for k, v in records)
    write_table(index, items)


def entry_of(records: list[tuple[bytes, Any]], name: str) -> Any:
    return dict(records)[name.encode()]
