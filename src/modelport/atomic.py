"""Write files atomically: to a temporary name in the same folder, then rename into place.

An interrupted or failed write never leaves a partial file at the destination, and never
damages the file that was there before.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator

from modelport.errors import ConfigError


def make_folder(folder: str | os.PathLike[str], what: str = "output folder") -> str:
    """Create `folder` (and its parents) if needed; ConfigError when that is impossible (a
    parent is a regular file, no permission, ...)."""
    path = os.fspath(folder)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{what} '{path}' exists and is not a folder. Fix: give a folder path "
                          "or remove the file")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the {what} '{path}': {exc.strerror or exc}. Fix: give "
                          "a writable folder path") from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success it is renamed to `path`.

    An output path that cannot be written (its folder cannot be created, or it names an
    existing folder) is a ConfigError raised before anything is written."""
    target = os.fspath(path)
    if os.path.isdir(target):
        raise ConfigError(f"output file '{target}' is an existing folder. Fix: give a file path")
    folder = make_folder(os.path.dirname(os.path.abspath(target)), f"folder of '{target}'")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                   dir=folder)
    except OSError as exc:
        raise ConfigError(f"cannot write '{target}': {exc.strerror or exc}. Fix: give a "
                          "writable path") from None
    os.close(fd)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would (after
    # the writer: some writers, safetensors' for one, replace the file rather than fill it).
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_with(path: str | os.PathLike[str], writer: Callable[[str], None]) -> None:
    """Call `writer(tmp_path)` and move its output into place only if it succeeds."""
    with atomic_path(path) as tmp:
        writer(tmp)
