"""Caffe's LEVELDB backend of the Data layer (util/db_leveldb.cpp), read through plyvel.

Caffe opens the database with LevelDB's default comparator and walks it with an iterator from
SeekToFirst, wrapping to the first key at the end (data_reader.cpp / data_layer.cpp): records
come in bytewise lexicographic key order, which is plyvel's iterator order. Values are the same
serialized `Datum`s as in an LMDB (convert_imageset, convert_mnist_data and
convert_mnist_siamese_data write keys like `%08d`).

LevelDB lets one process at a time open a database (it takes an fcntl lock on `LOCK`), and
opening needs write access to its folder. Caffe runs every solver as a thread of one process;
here other processes can read the same database (DataLoader workers, torchrun ranks), and the
database may sit in a read-only folder. So each process opens it once (`shared_db`), and a
process that cannot open it in place (locked by another process, or not writable) opens a
private snapshot instead: hard links (or copies) of the database files in a temporary folder,
removed at exit. LevelDB never rewrites an existing table or log file, so the links are safe.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
from typing import Any

from modelport.errors import ConfigError

LOG = logging.getLogger("modelport.train")

# realpath -> (pid, plyvel.DB, snapshot folder or None): one handle per database per process.
_DBS: dict[str, tuple[int, Any, str | None]] = {}
_LOCK = threading.Lock()
# Handles inherited through fork: LevelDB's background state does not survive a fork, so they
# are neither used nor closed in the child (closing could wait on a thread that is not there).
_INHERITED: list[Any] = []
# Files of a LevelDB folder a reader never needs: the lock and the info logs.
_SKIP = ("LOCK", "LOG", "LOG.old")


class LevelDbUnavailableError(ConfigError):
    """The plyvel package (LevelDB binding) is not installed."""


def require_plyvel() -> Any:
    """The plyvel module (LevelDbUnavailableError naming the extra when it is not installed)."""
    try:
        import plyvel
    except ImportError:
        raise LevelDbUnavailableError("reading LevelDB needs the plyvel package. Fix: pip install "
                                 "'modelport[data]' (or plyvel)") from None
    return plyvel


def is_leveldb(path: str) -> bool:
    """Whether `path` looks like a LevelDB folder (it has the CURRENT file naming a manifest)."""
    return os.path.isfile(os.path.join(path, "CURRENT"))


def _snapshot(path: str) -> str:
    """A private copy of the LevelDB at `path`: hard links where possible, else copies."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        folder = tempfile.mkdtemp(prefix=".modelport-leveldb-", dir=parent)
    except OSError:
        folder = tempfile.mkdtemp(prefix="modelport-leveldb-")
    copied = 0
    try:
        for name in sorted(os.listdir(path)):
            src = os.path.join(path, name)
            if name in _SKIP or not os.path.isfile(src):
                continue
            dst = os.path.join(folder, name)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
                copied += os.path.getsize(dst)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if copied:
        LOG.info("LevelDB %s is in use by another process or read-only: reading a private "
                 "copy (%d bytes copied)", path, copied)
    return folder


def _open(path: str) -> tuple[Any, str | None]:
    """Open the LevelDB at `path` in place, or a private snapshot of it."""
    plyvel = require_plyvel()
    try:
        return plyvel.DB(path, create_if_missing=False), None
    except plyvel.IOError:
        pass  # locked by another process, or the folder is not writable
    folder = _snapshot(path)
    try:
        return plyvel.DB(folder, create_if_missing=False), folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def shared_db(path: str) -> Any:
    """This process's plyvel.DB for the LevelDB folder `path` (shared by every reader)."""
    key = os.path.realpath(path)
    with _LOCK:
        entry = _DBS.get(key)
        if entry is not None and entry[0] == os.getpid():
            return entry[1]
        if entry is not None:
            _INHERITED.append(entry[1])
        db, folder = _open(path)
        _DBS[key] = (os.getpid(), db, folder)
        return db


@atexit.register
def close_all() -> None:
    """Close this process's databases and remove their snapshots."""
    with _LOCK:
        for key, (pid, db, folder) in list(_DBS.items()):
            if pid != os.getpid():
                continue
            try:
                db.close()
            except Exception:  # noqa: BLE001 - closing at exit must not raise
                pass
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            del _DBS[key]


class LevelDbRecords:
    """Key/value access to one LevelDB of Datum records (what DatumSource reads)."""

    backend = "LevelDB"

    def __init__(self, path: str) -> None:
        self.path = path

    def _db(self) -> Any:
        return shared_db(self.path)

    def keys(self) -> list[bytes]:
        """Every key in Caffe's cursor order (bytewise lexicographic)."""
        return list(self._db().iterator(include_value=False))

    def get(self, key: bytes) -> bytes | None:
        value = self._db().get(key)
        return None if value is None else bytes(value)

    @staticmethod
    def errors() -> tuple[type[BaseException], ...]:
        """The binding's exceptions (reported with the database's name and a fix)."""
        return (require_plyvel().Error,)
