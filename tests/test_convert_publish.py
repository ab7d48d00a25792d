"""Publishing a conversion folder (issue 15, item 2): one atomic switch, an exclusive lock, no
stale staging, the umask's permissions, and `load()` refusing a folder that mixes two
conversions. The kill -9 trials are in test_kill9.py."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import threading
import time

import pytest
import torch

from golden_support import GOLDEN
from modelport.atomic import exclusive_lock
from modelport.cli import main
from modelport.convert import OutputFolder, convert, load_generated, sha256_file
from modelport.errors import ConfigError

CAFFE = GOLDEN / "caffe"
A = (CAFFE / "conv_basic" / "net.prototxt", CAFFE / "conv_basic" / "weights.caffemodel")
B = (CAFFE / "conv_hw" / "net.prototxt", CAFFE / "conv_hw" / "weights.caffemodel")
MEAN = CAFFE / "mean_binaryproto" / "mean.binaryproto"


def _visible(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if not p.name.startswith(".") and p.is_file()}


def test_layout_links_into_one_generation(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    convert(*A, out, mean=MEAN)
    meta = out / ".modelport"
    current = os.readlink(meta / "current")
    assert current.startswith("conv-") and (meta / current).is_dir()
    for name in ("model.py", "model.safetensors", "conversion.json", "mean.npy"):
        assert os.readlink(out / name) == f".modelport/current/{name}"
    report = json.loads((out / "conversion.json").read_text())
    assert report["sha256"] == {n: sha256_file(out / n)
                                for n in ("model.safetensors", "model.py", "mean.npy")}
    assert sorted(os.listdir(meta)) == [current, "current", "lock"]
    # a new conversion without a mean: the old mean.npy goes with the old conversion
    (out / "notes.txt").write_text("mine")
    convert(*B, out)
    assert sorted(_visible(out)) == ["conversion.json", "model.py", "model.safetensors",
                                     "notes.txt"]
    assert not os.path.lexists(out / "mean.npy")
    assert len([n for n in os.listdir(meta) if n.startswith("conv-")]) == 1
    load_generated(out / "model.py").load()


def test_plain_folder_of_an_earlier_version_is_taken_over(tmp_path: pathlib.Path) -> None:
    ref = tmp_path / "ref"
    convert(*A, ref, mean=MEAN)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("model.py", "model.safetensors", "conversion.json", "mean.npy"):
        shutil.copyfile(ref / name, out / name)  # plain files, as modelport <= 0.x wrote
    (out / "notes.txt").write_text("mine")
    convert(*B, out)
    new = tmp_path / "new"
    convert(*B, new)
    expected = _visible(new)
    expected["notes.txt"] = b"mine"
    assert _visible(out) == expected  # the old mean.npy (listed by its conversion.json) left


def test_a_users_own_mean_npy_is_kept(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mean.npy").write_bytes(b"user data")
    convert(*A, out)
    assert (out / "mean.npy").read_bytes() == b"user data"


def test_second_convert_while_one_runs_fails_clearly(tmp_path: pathlib.Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    convert(*A, out)
    before = _visible(out)
    with exclusive_lock(out / ".modelport" / "lock", "test"):
        with pytest.raises(ConfigError, match=rf"output folder '{out}' is being written by "
                                              rf"another modelport process \(pid {os.getpid()}"
                                              r"\)\. Fix: wait"):
            convert(*B, out)
        rc = main(["convert", str(B[0]), str(B[1]), "-o", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "is being written by" in err[0], err
    assert _visible(out) == before


def test_wait_serialises_concurrent_converts(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    convert(*A, out)
    done: list[str] = []
    lock = exclusive_lock(out / ".modelport" / "lock", "test")
    lock.__enter__()
    worker = threading.Thread(target=lambda: done.append(convert(*B, out, wait=True).out_dir))
    worker.start()
    time.sleep(0.5)  # not a timing assert: the convert cannot finish while the lock is held
    assert not done and worker.is_alive()
    lock.__exit__(None, None, None)
    worker.join(120)
    assert done
    ref = tmp_path / "ref"
    convert(*B, ref)
    assert _visible(out) == _visible(ref)


def test_stale_staging_of_killed_runs_is_removed(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    convert(*A, out)
    stale = out / ".modelport" / "conv-killed1"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"x" * 1000)
    (out / ".model.py.abcd1234.link").symlink_to("nowhere")
    legacy = tmp_path / ".out.k2j3h4.partial"  # what modelport before the lock left
    legacy.mkdir()
    (legacy / "model.safetensors").write_bytes(b"x" * 1000)
    other = tmp_path / ".other.k2j3h4.partial"  # another folder's: not ours to remove
    other.mkdir()
    convert(*B, out)
    assert not stale.exists() and not legacy.exists() and other.exists()
    assert not os.path.lexists(out / ".model.py.abcd1234.link")


def test_new_folders_follow_the_umask(tmp_path: pathlib.Path) -> None:
    old = os.umask(0o027)
    try:
        convert(*A, tmp_path / "out")
    finally:
        os.umask(old)
    out = tmp_path / "out"
    gen = out / ".modelport" / os.readlink(out / ".modelport" / "current")
    for folder in (out, out / ".modelport", gen):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750, folder
    assert stat.S_IMODE((gen / "model.py").stat().st_mode) == 0o640


def test_failed_convert_leaves_an_existing_folder_as_it_was(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(A[1].read_bytes()[:40])
    with pytest.raises(Exception):  # noqa: B017 - whichever ModelportError the reader raises
        convert(A[0], bad, out)
    assert sorted(os.listdir(out)) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["bad.caffemodel", "out"]


def test_load_refuses_a_folder_mixing_two_conversions(tmp_path: pathlib.Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    convert(*A, a)
    convert(*A, b)
    model = load_generated(a / "model.py")
    model.load()  # whole: loads
    weights = a / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # the same layout, one different weight
    weights.unlink()
    weights.write_bytes(bytes(data))
    with pytest.raises(RuntimeError) as info:
        model.load()
    msg = str(info.value)
    assert "\n" not in msg and "model.safetensors is not the file written with this model.py" \
        in msg and "Fix:" in msg
    assert isinstance(model.load(str(weights)), torch.nn.Module)  # explicit weights: no check
    # a conversion.json recording another model.safetensors
    report = json.loads((b / "conversion.json").read_text())
    report["sha256"]["model.safetensors"] = "0" * 64
    (b / "conversion.json").unlink()
    (b / "conversion.json").write_text(json.dumps(report))
    with pytest.raises(RuntimeError, match="conversion.json belongs to another conversion"):
        load_generated(b / "model.py").load()


def test_report_hashes_are_the_files_own(tmp_path: pathlib.Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """conversion.json's sha256 of the sources (the caffemodel's computed on a worker while the
    model is built) and of the files written (hashed while written, in many chunks here) are
    hashlib's of the bytes; the chunked write gives the same bytes as a one-chunk one."""
    import hashlib

    from modelport.formats.caffe import mapped

    convert(*A, tmp_path / "one", mean=MEAN)
    monkeypatch.setattr(mapped, "CHUNK_BYTES", 256)
    out = tmp_path / "out"
    convert(*A, out, mean=MEAN)

    def sha(p: pathlib.Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    report = json.loads((out / "conversion.json").read_text())
    assert {k: v["sha256"] for k, v in report["sources"].items()} == {
        "prototxt": sha(A[0]), "caffemodel": sha(A[1]), "mean": sha(MEAN)}
    assert report["sha256"] == {n: sha(out / n)
                                for n in ("model.safetensors", "model.py", "mean.npy")}
    assert _visible(out) == _visible(tmp_path / "one")


def test_a_failed_convert_stops_its_source_hash(tmp_path: pathlib.Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from modelport import digest

    started = threading.Event()

    def slow_hash(path, stop=None):  # type: ignore[no-untyped-def]
        started.set()
        if not stop.wait(30):  # only a cancel ends it early
            return "0" * 64
        raise digest.HashCancelledError(str(path))

    monkeypatch.setattr(digest, "sha256_file", slow_hash)
    bad = tmp_path / "bad.prototxt"
    bad.write_text(A[0].read_text() + 'layer { name: "x" type: "NoSuchType" bottom: "data" '
                   'top: "x" }\n')
    with pytest.raises(Exception, match="NoSuchType"):
        convert(bad, A[1], tmp_path / "out")
    assert started.wait(5)
    workers = [t for t in threading.enumerate() if t.name == "modelport-sha256"]
    for t in workers:
        t.join(5)
    assert not any(t.is_alive() for t in workers)


def test_an_unreadable_source_is_a_one_line_error_and_nothing_is_published(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelport import digest
    from modelport.errors import FormatError

    out = tmp_path / "out"
    convert(*B, out)
    before = _visible(out)

    def failing(path, stop=None):  # type: ignore[no-untyped-def]
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(digest, "sha256_file", failing)
    with pytest.raises(FormatError, match="cannot read .*weights.caffemodel.*Permission denied"
                       ) as info:
        convert(*A, out)
    assert "\n" not in str(info.value)
    assert _visible(out) == before


def test_a_failing_run_keeps_what_another_published_after_its_folder_checks(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # two runs (with --wait) both see no out/.modelport; the other one creates it and
    # publishes; this one then gets the lock and fails: it must not remove the other's output
    out = tmp_path / "out"
    case = GOLDEN / "caffe" / "conv_hw"
    real_makedirs = os.makedirs

    def other_run_first(path, *args, **kwargs):
        monkeypatch.setattr(os, "makedirs", real_makedirs)
        convert(case / "net.prototxt", case / "weights.caffemodel", out)
        real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", other_run_first)
    with pytest.raises(RuntimeError, match="fails after the lock"), \
            OutputFolder(str(out), "out", wait=True):
        raise RuntimeError("this run fails after the lock")
    assert os.makedirs is real_makedirs  # the other run did publish inside this run's checks
    net = load_generated(out / "model.py").load()
    assert sorted(net.state_dict()) == ["conv.weight"]  # conv_hw has no bias
