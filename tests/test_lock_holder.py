"""exclusive_lock's refusal while another process holds the lock is always a ConfigError,
whatever the lock file holds at that instant.

The holder truncates the lock file and then writes its pid; a contender that reads the file in
between (or before a new lock file's first write) finds it empty. A CI run of
tests/test_kill9.py's concurrent converts exited 99 there (IndexError from naming the pid of an
empty file). Here that interleaving is forced: the contender tries the lock exactly inside the
holder's truncate-then-write window.
"""

from __future__ import annotations

import fcntl
import os
import pathlib

import pytest

from modelport import atomic
from modelport.atomic import exclusive_lock
from modelport.errors import ConfigError

REFUSED = r"output folder 'out' is being written by another modelport process"


def _refusal(lock: pathlib.Path) -> str:
    """The message of a second, non-waiting exclusive_lock on `lock` (it must be refused)."""
    with pytest.raises(ConfigError, match=REFUSED) as info, exclusive_lock(lock, "output "
                                                                          "folder 'out'"):
        pytest.fail("the lock was taken twice")
    return str(info.value)


def test_a_contender_inside_the_holders_truncate_then_write_window_gets_a_config_error(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "lock"
    lock.write_text("4242\n")  # an earlier holder's pid (a folder that was converted into before)
    seen: list[str] = []
    real_ftruncate = os.ftruncate

    def truncate_then_contend(fd: int, length: int) -> None:
        real_ftruncate(fd, length)
        if not seen:  # the holder's truncate: the file is empty until its pid is written
            assert lock.read_bytes() == b""
            seen.append(_refusal(lock))

    monkeypatch.setattr(atomic.os, "ftruncate", truncate_then_contend)
    with exclusive_lock(lock, "output folder 'out'"):
        after = _refusal(lock)
    assert len(seen) == 1 and "(pid" not in seen[0], seen  # no pid to name yet
    assert f"(pid {os.getpid()})" in after, after          # once written, the holder is named


@pytest.mark.parametrize("content", [b"", b"\n", b"   ", b"not-a-pid\n", b"\xff\xfe"])
def test_a_held_lock_file_without_a_readable_pid_is_still_a_config_error(
        tmp_path: pathlib.Path, content: bytes) -> None:
    lock = tmp_path / "lock"
    lock.write_bytes(content)
    fd = os.open(lock, os.O_RDWR)  # another holder: its own open file description
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        message = _refusal(lock)
    finally:
        os.close(fd)
    assert "(pid" not in message, message
