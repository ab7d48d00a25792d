"""The LevelDB table ("SSTable") format, read-only, as TensorFlow writes a checkpoint's `.index`
(tensorflow/core/lib/io/table*.cc, table_format.txt; the same layout as leveldb/table/).

A file is: data blocks, a metaindex block, an index block, then a 48-byte footer:
`metaindex handle, index handle` (each a BlockHandle: varint64 offset, varint64 size), zero
padding to 40 bytes, and the magic 0xdb4775248b80fb57 (fixed64, little-endian). Every block is
followed by a 5-byte trailer: its compression type (0 none, 1 snappy) and the masked crc32c of
the block's bytes plus that type byte. A block holds entries `varint32 shared, varint32
non_shared, varint32 value_length, key[shared:], value` (keys prefix-compressed against the
previous key, fully spelled out at each restart point), then the restart offsets (fixed32 each)
and their count (fixed32). The index block maps a separator key >= every key of a data block to
that block's handle. Keys are in strictly increasing byte order across the whole file.

TensorFlow writes checkpoint indexes uncompressed (BundleWriter: kNoCompression); a
snappy-compressed block is refused with a clear error. Every check failure is a one-line
FormatError naming the file and what is wrong.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from modelport.errors import FormatError
from modelport.formats.tf import crc
from modelport.formats.varint import VarintError, decode_varint

__all__ = ["MAGIC", "CorruptDataError", "parse_table", "read_table", "read_varint"]

MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
TRAILER_SIZE = 5
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1


class CorruptDataError(Exception):
    """What is wrong in the bytes; callers turn it into a FormatError naming the file."""


def read_varint(data: bytes, pos: int, limit: int, bits: int = 64) -> tuple[int, int]:
    """A base-128 varint of at most `bits` bits at `pos` (before `limit`): (value, next pos).
    Up to ceil(bits / 7) + 1 bytes are read (the last one's extra bits fail the range check)."""
    try:
        value, pos = decode_varint(data, pos, limit, (bits + 13) // 7)
    except VarintError as exc:
        raise CorruptDataError("a varint runs past the end of its block" if exc.truncated
                               else f"a varint{bits} is longer than {bits} bits") from None
    if value >> bits:
        raise CorruptDataError(f"a varint{bits} is out of range")
    return value, pos


def _handle(data: bytes, pos: int, limit: int) -> tuple[int, int, int]:
    offset, pos = read_varint(data, pos, limit)
    size, pos = read_varint(data, pos, limit)
    return offset, size, pos


def _block(data: bytes, offset: int, size: int, what: str, end: int) -> bytes:
    if offset + size + TRAILER_SIZE > end:
        raise CorruptDataError(f"the {what} block (offset {offset}, {size} bytes) runs past "
                               f"the data region ({end} bytes)")
    kind = data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if crc.crc32c(data[offset:offset + size + 1]) != crc.unmask(stored):
        raise CorruptDataError(f"the {what} block at offset {offset} fails its crc32c check")
    if kind == SNAPPY_COMPRESSION:
        raise CorruptDataError(f"the {what} block at offset {offset} is snappy-compressed, which "
                               "modelport does not decode (TensorFlow writes checkpoint indexes "
                               "uncompressed). Fix: re-save the checkpoint with TensorFlow")
    if kind != NO_COMPRESSION:
        raise CorruptDataError(f"the {what} block at offset {offset} has unknown compression type "
                               f"{kind}")
    return data[offset:offset + size]


def _entries(block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    n = len(block)
    if n < 4:
        raise CorruptDataError(f"the {what} block is {n} bytes, too short for its restart count")
    (restarts,) = struct.unpack_from("<I", block, n - 4)
    limit = n - 4 - 4 * restarts
    if restarts < 1 or limit < 0:
        raise CorruptDataError(f"the {what} block claims {restarts} restart points in {n} bytes")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = read_varint(block, pos, limit, 32)
        unshared, pos = read_varint(block, pos, limit, 32)
        value_len, pos = read_varint(block, pos, limit, 32)
        if shared > len(key):
            raise CorruptDataError(f"an entry of the {what} block shares {shared} bytes with a "
                                   f"{len(key)}-byte key")
        if pos + unshared + value_len > limit:
            raise CorruptDataError(f"an entry of the {what} block runs past the block's end")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + value_len]
        pos += value_len


def parse_table(data: bytes, source: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of the table in `data`, in file order; FormatError naming `source`
    when it is not a well-formed table."""
    try:
        return _parse(data)
    except CorruptDataError as exc:
        raise FormatError(f"{source}: not a TensorFlow checkpoint index (SSTable): {exc}") from None


def _parse(data: bytes) -> list[tuple[bytes, bytes]]:
    if len(data) < FOOTER_SIZE:
        raise CorruptDataError(f"{len(data)} bytes, shorter than the {FOOTER_SIZE}-byte table "
                               "footer")
    footer = len(data) - FOOTER_SIZE
    (magic,) = struct.unpack_from("<Q", data, footer + 40)
    if magic != MAGIC:
        raise CorruptDataError(f"no table magic number at the end (found {magic:#018x}, "
                               f"expected {MAGIC:#018x})")
    _, _, pos = _handle(data, footer, footer + 40)  # metaindex: TensorFlow stores nothing there
    index_offset, index_size, _ = _handle(data, pos, footer + 40)
    index = _block(data, index_offset, index_size, "index", footer)
    items: list[tuple[bytes, bytes]] = []
    previous: bytes | None = None
    for separator, value in _entries(index, "index"):
        offset, size, _ = _handle(value, 0, len(value))
        for key, entry in _entries(_block(data, offset, size, "data", footer), "data"):
            if previous is not None and key <= previous:
                raise CorruptDataError(
                    f"keys are out of order ({key[:60]!r} after {previous[:60]!r})")
            if key > separator:
                raise CorruptDataError(f"key {key[:60]!r} lies beyond its block's index key")
            items.append((key, entry))
            previous = key
    return items


def read_table(path: str | Path) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of the SSTable at `path`, in its (sorted) order; FormatError naming
    the file when it is not a well-formed table."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_table(data, str(path))
