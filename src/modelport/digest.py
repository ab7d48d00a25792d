"""sha256 of files and of byte streams, computed on a worker thread while the caller goes on.

The results are exactly `hashlib.sha256` of the same bytes in the same order; only where the
work runs changes. hashlib releases the GIL while it hashes a buffer larger than 2 KiB (and a
file's `readinto` releases it too), so a worker thread hashing a source file, or the chunks a
writer is writing, runs on another core while the caller reads, builds and writes. A worker
holds one 1 MiB read buffer (files) or the caller's own buffers (streams): no copy of the data.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

# A file is read into one reused buffer and hashed this much at a time: small enough to stay
# in the core's cache between the read's copy and the hash (an 8 MiB buffer cost VGG-16's
# convert 0.2 CPU seconds more on a loaded machine), large enough to make the GIL hand-overs
# between chunks rare.
READ_BYTES = 1 << 20


class HashCancelledError(Exception):
    """A background file hash stopped before the end (its result was no longer wanted)."""


def sha256_file(path: str | os.PathLike[str], stop: threading.Event | None = None) -> str:
    """The sha256 (hex) of the file at `path`, read through one reused buffer. With
    `stop`, raises HashCancelledError as soon as it is set."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        view = memoryview(bytearray(max(1, min(READ_BYTES, os.fstat(fh.fileno()).st_size))))
        while True:
            if stop is not None and stop.is_set():
                raise HashCancelledError(os.fspath(path))
            n = fh.readinto(view)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


class BackgroundFileHash:
    """`sha256_file(path)` started on a daemon thread at construction; `result()` waits for it
    (and raises its OSError, if reading failed); `cancel()` stops it early (an abandoned
    conversion does not keep reading its source)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._stop = threading.Event()
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modelport-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._digest = sha256_file(self.path, self._stop)
        except BaseException as exc:  # handed to result(), in the caller's thread
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest

    def cancel(self) -> None:
        self._stop.set()


class StreamHash:
    """The sha256 of buffers fed in order, hashed on one worker thread (or, with
    `threaded=False`, at once in the caller's thread: for small data a thread costs more than
    it saves).

    `feed(buffer)` returns at once with a Future that is done once `buffer` is hashed; the
    caller keeps `buffer` unchanged until then (it is hashed in place, not copied).
    `hexdigest()` waits for every buffer fed. Use as a context manager: leaving the block
    stops the worker (after an error too, dropping what it had not hashed yet)."""

    def __init__(self, initial: bytes = b"", threaded: bool = True) -> None:
        self._digest = hashlib.sha256(initial)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelport-sha256") \
            if threaded else None

    def feed(self, buffer: memoryview | bytes) -> Future[None]:
        if self._pool is not None:  # one worker: hashed in submission order
            return self._pool.submit(self._digest.update, buffer)
        done: Future[None] = Future()
        self._digest.update(buffer)
        done.set_result(None)
        return done

    def hexdigest(self) -> str:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        return self._digest.hexdigest()

    def __enter__(self) -> StreamHash:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
