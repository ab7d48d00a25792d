"""Base-128 varints, the integer encoding of protobuf messages (Caffe's binary files) and of
LevelDB tables (a TensorFlow checkpoint's `.index`), decoded in one place for both readers.

Seven bits a byte, least significant group first; a set high bit means another byte follows.
Each reader turns a VarintError into its own error, in its own words, and applies its own
range rule to the value.
"""

from __future__ import annotations

__all__ = ["VarintError", "decode_varint"]


class VarintError(Exception):
    """A varint that cannot be decoded: `truncated` (it runs past the limit) or, if not, it has
    a continuation bit on its last allowed byte (too long)."""

    def __init__(self, truncated: bool) -> None:
        super().__init__("truncated" if truncated else "too long")
        self.truncated = truncated


def decode_varint(data: memoryview | bytes, pos: int, limit: int,
                  max_bytes: int) -> tuple[int, int]:
    """The varint at data[pos:] of at most `max_bytes` bytes, none at or past `limit`:
    (value, position after it). The value is not range-checked."""
    result = 0
    shift = 0
    last_shift = 7 * max_bytes
    while True:
        if pos >= limit:
            raise VarintError(truncated=True)
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= last_shift:
            raise VarintError(truncated=False)
