"""Rewrite a `.keras` archive with some members replaced (valid zip, fresh CRCs)."""

from __future__ import annotations

import io
import pathlib
import zipfile
from collections.abc import Callable


def rezip(source: pathlib.Path, path: pathlib.Path,
          change: Callable[[dict[str, bytes]], None]) -> pathlib.Path:
    """Write `path`: the members of the archive `source`, after `change(members)` edits them
    (name -> bytes) in place."""
    with zipfile.ZipFile(source) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    change(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    path.write_bytes(out.getvalue())
    return path
