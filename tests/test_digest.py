"""modelport.digest: sha256 of files and streams on a worker thread, equal to hashlib's of the
same bytes (every chunk boundary), cancellable, and its errors handed to the caller."""

from __future__ import annotations

import hashlib
import pathlib
import threading

import pytest

from modelport import digest
from modelport.digest import BackgroundFileHash, HashCancelledError, StreamHash, sha256_file


@pytest.mark.parametrize("size", [0, 1, 6, 7, 8, 13, 14, 15, 100])
def test_file_hash_at_every_chunk_boundary(tmp_path: pathlib.Path, size: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest, "READ_BYTES", 7)  # sizes around 1x and 2x the buffer
    data = bytes((i * 37 + 11) % 256 for i in range(size))
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == expected
    assert BackgroundFileHash(path).result() == expected


def test_background_hash_of_a_missing_file_raises_in_the_caller(tmp_path: pathlib.Path) -> None:
    job = BackgroundFileHash(tmp_path / "missing.caffemodel")
    with pytest.raises(FileNotFoundError):
        job.result()


def test_a_stopped_file_hash_raises_cancelled(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    stop = threading.Event()
    stop.set()
    with pytest.raises(HashCancelledError):
        sha256_file(path, stop)


@pytest.mark.parametrize("threaded", [True, False])
def test_stream_hash_equals_hashlib_of_the_concatenation(threaded: bool) -> None:
    parts = [b"", b"a", bytes(range(256)) * 40, memoryview(b"tail" * 1000)[3:], b"z"]
    with StreamHash(b"head", threaded=threaded) as stream:
        futures = [stream.feed(p) for p in parts]
        got = stream.hexdigest()
    assert all(f.done() for f in futures)
    assert got == hashlib.sha256(b"head" + b"".join(bytes(p) for p in parts)).hexdigest()


def test_stream_hash_worker_stops_when_the_block_fails() -> None:
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="disk full"), StreamHash() as stream:
        stream.feed(b"x" * 10000).result()
        raise RuntimeError("disk full")
    assert not [t for t in threading.enumerate()
                if t.ident not in before and t.name.startswith("modelport-sha256")]
