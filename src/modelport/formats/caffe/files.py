"""File access shared by the Caffe readers: clear errors for missing or unreadable paths."""

from __future__ import annotations

import mmap
import os

from modelport.errors import FormatError


def check_file(path: str | os.PathLike[str], what: str) -> str:
    """Return path as str, or raise FormatError naming `what` when it is not a readable file."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FormatError(f"{what} '{p}' does not exist")
    if os.path.isdir(p):
        raise FormatError(f"{what} '{p}' is a directory, expected a file")
    if not os.access(p, os.R_OK):
        raise FormatError(f"{what} '{p}' is not readable")
    return p


def read_bytes(path: str | os.PathLike[str], what: str) -> memoryview:
    """Map a binary file read-only (no copy of a multi-hundred-MB caffemodel on the heap)."""
    p = check_file(path, what)
    size = os.path.getsize(p)
    if size == 0:
        return memoryview(b"")
    with open(p, "rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return memoryview(mapped)


def read_text(path: str | os.PathLike[str], what: str) -> str:
    """The text of a file that must exist (`check_file`), decoded as UTF-8; FormatError naming the
    file otherwise."""
    p = check_file(path, what)
    with open(p, "rb") as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"{what} '{p}' is not text (byte {exc.start} is not UTF-8); "
            "is it a binary .caffemodel given where a .prototxt is expected?"
        ) from None
