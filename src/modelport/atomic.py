"""Write files atomically: to a temporary name in the same folder, then rename into place.

An interrupted or failed write never leaves a partial file at the destination, and never
damages the file that was there before. `exclusive_lock` serialises writers of one output
(an flock on a lock file, released by the kernel when its holder dies, kill -9 included).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from types import ModuleType

from modelport.errors import ConfigError

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, the lock is not taken
    fcntl = None


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


def umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_unique_dir(parent: str, prefix: str) -> str:
    """A new uniquely named folder in `parent` with the permissions `mkdir` would give (the
    umask applies; tempfile.mkdtemp's 0700 does not last)."""
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(path, 0o777 & ~umask())
    return path


def fsync_dir(folder: str) -> None:
    """Make the renames in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def link_or_copy(src: str, dst: str) -> None:
    """Give `dst` the content of `src` atomically: a hard link when the filesystem allows it,
    else a copy (written to a temporary name, then renamed)."""
    folder = os.path.dirname(os.path.abspath(dst))
    tmp = os.path.join(folder, f".{os.path.basename(dst)}.{os.urandom(4).hex()}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def symlink_atomic(target: str, path: str) -> None:
    """Make `path` a symbolic link to `target`, replacing what was there in one rename."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.urandom(4).hex()}.link")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], what: str, wait: bool = False,
                   wait_option: str | None = "--wait") -> Iterator[None]:
    """Hold an exclusive `flock` on the lock file `path` (created when missing; it records the
    holder's pid) for the duration of the block. Without `wait`, a lock another process holds
    is a ConfigError naming `what` and that process; with it, the call blocks until the
    holder finishes (`wait_option`, if any, is the command-line option the refusal suggests
    for that). The kernel drops the lock of a process that dies, so a killed run never
    leaves a stale lock behind."""
    p = os.fspath(path)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    while True:
        try:
            fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise ConfigError(f"cannot create the lock file '{p}' for {what}: "
                              f"{exc.strerror or exc}. Fix: give a writable location") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                # empty while the holder is between its truncate and its pid write (or has
                # not written a new lock file yet): then there is no pid to name
                words = os.pread(fd, 32, 0).split()
                holder = f" (pid {int(words[0])})" if words else ""
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                hint = f" (or pass {wait_option})" if wait_option else ""
                raise ConfigError(f"{what} is being written by another modelport process"
                                  f"{holder}. Fix: wait for it to finish{hint}, or write "
                                  "somewhere else") from None
            raise ConfigError(f"cannot lock '{p}' for {what}: {exc.strerror or exc}. Fix: "
                              "use a local filesystem that supports file locks") from None
        try:  # the file may have been removed (and recreated) between open and flock
            same = os.path.samestat(os.fstat(fd), os.stat(p))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically (a temporary file renamed into place)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` as UTF-8, atomically (see write_bytes)."""
    write_bytes(path, text.encode("utf-8"))


def write_with(path: str | os.PathLike[str], writer: Callable[[str], None]) -> None:
    """Call `writer(tmp_path)` and move its output into place only if it succeeds."""
    with atomic_path(path) as tmp:
        writer(tmp)
