"""A minimal protobuf wire-format scanner for Caffe's large binary files.

protobuf's Python API would turn every weight into a Python float before numpy sees it (slow and
several times the file size in memory). Instead we walk the message structure ourselves and view
packed float fields directly as numpy arrays over the (memory-mapped) file. Only the few fields
that carry weights are interpreted here; every other field's bytes are handed to protobuf.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from modelport.errors import FormatError
from modelport.formats.varint import VarintError, decode_varint

WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_LEN = 2
WIRE_FIXED32 = 5


@dataclass(frozen=True)
class Field:
    """One field occurrence: number, wire type, and its value (int) or byte span [start, end)."""

    number: int
    wire_type: int
    value: int
    start: int
    end: int


def read_varint(buf: memoryview | bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a base-128 varint (at most 10 bytes, protobuf's limit) at pos; return (value,
    next position)."""
    try:
        return decode_varint(buf, pos, end, 10)
    except VarintError as exc:
        raise FormatError("truncated protobuf data (varint runs past the end)" if exc.truncated
                          else "malformed protobuf data (varint longer than 10 bytes)") from None


def iter_fields(buf: memoryview | bytes, start: int, end: int) -> Iterator[Field]:
    """Yield the top-level fields of the message stored in buf[start:end]."""
    pos = start
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise FormatError("malformed protobuf data (field number 0)")
        if wire_type == WIRE_VARINT:
            value, pos = read_varint(buf, pos, end)
            yield Field(number, wire_type, value, pos, pos)
        elif wire_type == WIRE_LEN:
            length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                raise FormatError(
                    f"truncated protobuf data (field {number} needs {length} bytes, "
                    f"{end - pos} remain)"
                )
            yield Field(number, wire_type, length, pos, pos + length)
            pos += length
        elif wire_type == WIRE_FIXED32:
            if pos + 4 > end:
                raise FormatError("truncated protobuf data (fixed32 past the end)")
            yield Field(number, wire_type, 0, pos, pos + 4)
            pos += 4
        elif wire_type == WIRE_FIXED64:
            if pos + 8 > end:
                raise FormatError("truncated protobuf data (fixed64 past the end)")
            yield Field(number, wire_type, 0, pos, pos + 8)
            pos += 8
        else:
            raise FormatError(f"malformed protobuf data (wire type {wire_type} for field {number})")


UNPACKED_RUN = 8  # not a protobuf wire type: one Field for a run of unpacked fixed-width values
_RUN_CHUNK = 1 << 16  # records checked per numpy comparison


def _run_length(buf: memoryview | bytes, pos: int, end: int, key: int, width: int) -> int:
    """How many whole (key byte, `width`-byte value) records follow each other from pos.

    The probe starts at 16 records and doubles up to _RUN_CHUNK, so a short run costs a short
    look (a fixed 64K-record probe made each field of a file alternating `data` values with
    other fields cost the rest of the file: O(fields x 64K), found by tools/fuzz.py)."""
    size = 1 + width
    count, p, chunk = 0, pos, 16
    while True:
        n = min((end - p) // size, chunk)
        if n == 0:
            return count
        keys = np.frombuffer(buf, dtype=np.uint8, count=n * size, offset=p)[::size]
        bad = np.flatnonzero(keys != key)
        if bad.size:
            return count + int(bad[0])
        count, p, chunk = count + n, p + n * size, min(2 * chunk, _RUN_CHUNK)


def iter_fields_runs(buf: memoryview | bytes, start: int, end: int,
                     runs: dict[int, int]) -> Iterator[Field]:
    """`iter_fields`, except that consecutive unpacked occurrences of a fixed32/fixed64 field
    whose one-byte key is in `runs` (key -> value width) come as ONE Field(number,
    UNPACKED_RUN, value=count, start, end) spanning the records (decode with
    `unpacked_values`). Legacy writers store `repeated float data` unpacked, one key per value:
    this keeps such blobs linear-time in numpy instead of a Python step per value."""
    pos = start
    while pos < end:
        key = buf[pos]
        width = runs.get(key)
        if width is not None:
            count = _run_length(buf, pos, end, key, width)
            if count:
                nxt = pos + count * (1 + width)
                yield Field(key >> 3, UNPACKED_RUN, count, pos, nxt)
                pos = nxt
                continue
        f = next(iter_fields(buf, pos, end))  # one field (and its errors, e.g. truncation)
        yield f
        pos = f.end  # every kind of Field ends where the next one starts


def unpacked_values(buf: memoryview | bytes, f: Field, dtype: str) -> np.ndarray:
    """The values of an UNPACKED_RUN field as a new contiguous array of `dtype` (one copy:
    the values sit between keys in the file, so no view of them exists)."""
    record = np.dtype([("key", np.uint8), ("value", dtype)])  # packed: 1 + width bytes
    records = np.frombuffer(buf, dtype=record, count=f.value, offset=f.start)
    return np.array(records["value"], dtype=np.dtype(dtype), order="C")  # unaligned gather


def encode_key(number: int, wire_type: int) -> bytes:
    """The varint key of field `number` with `wire_type`."""
    return encode_varint((number << 3) | wire_type)


def encode_varint(value: int) -> bytes:
    """`value` as a base-128 varint (a negative int as its 64-bit two's complement, as
    protobuf writes int32/int64)."""
    out = bytearray()
    if value < 0:
        value += 1 << 64
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def raw_field_bytes(buf: memoryview | bytes, f: Field) -> bytes:
    """Re-encode one scanned field (key + payload) so it can be handed to protobuf."""
    key = encode_key(f.number, f.wire_type)
    if f.wire_type == WIRE_VARINT:
        return key + encode_varint(f.value)
    if f.wire_type == WIRE_LEN:
        return key + encode_varint(f.end - f.start) + bytes(buf[f.start : f.end])
    return key + bytes(buf[f.start : f.end])
