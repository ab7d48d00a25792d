"""Broken TF checkpoints: each a one-line FormatError naming the file and what is wrong (CLI
exit 2, no traceback), detected before anything large is allocated. The broken files are made
in tmp_path from the real fixtures (tests/fixtures/tf, written by TensorFlow)."""

from __future__ import annotations

import pathlib
import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

pytest.importorskip("google_crc32c", reason="the `tf` extra (google-crc32c) is not installed")
pytest.importorskip("ml_dtypes", reason="the `tf` extra (ml_dtypes) is not installed")
from tf_checkpoint_support import copy_fixture, edit_index, entry_of, expected, same_bits

from modelport.cli import main as cli_main
from modelport.errors import FormatError
from modelport.formats.tf import checkpoint as ck
from modelport.formats.tf import crc


def _shard(prefix: pathlib.Path, i: int, n: int = 2) -> pathlib.Path:
    return prefix.with_name(f"{prefix.name}.data-{i:05d}-of-{n:05d}")


def _cli_error(path: pathlib.Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert cli_main(["tf", "ls", *extra, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_truncated_data_shard(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = copy_fixture("slim", tmp_path)
    shard = _shard(prefix, 1)
    shard.write_bytes(shard.read_bytes()[:-3])  # global_step's last bytes go
    with pytest.raises(FormatError) as err:
        ck.read_checkpoint(prefix)
    msg = str(err.value)
    assert str(shard) in msg and "'global_step'" in msg and "truncated" in msg
    assert "global_step" in _cli_error(prefix, capsys)


def test_flipped_byte_names_the_variable(tmp_path: pathlib.Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    prefix = copy_fixture("slim", tmp_path)
    entry = next(e for e in ck.checkpoint_entries(prefix)
                 if e.name == "InceptionV4/Conv2d_1a_3x3/weights")
    shard = _shard(prefix, entry.shard)
    data = bytearray(shard.read_bytes())
    data[entry.offset + 100] ^= 0x40
    shard.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"'InceptionV4/Conv2d_1a_3x3/weights'.*crc32c") as err:
        ck.read_checkpoint(prefix)
    assert str(shard) in str(err.value)
    assert cli_main(["tf", "ls", str(prefix)]) == 0  # listing reads no value
    capsys.readouterr()
    assert "crc32c" in _cli_error(prefix, capsys, "--verify")


def test_flipped_byte_in_a_string_and_in_a_slice(tmp_path: pathlib.Path) -> None:
    prefix = copy_fixture("slim", tmp_path)
    entries = {e.name: e for e in ck.checkpoint_entries(prefix)}
    labels = entries["extras/labels"]
    shard = _shard(prefix, labels.shard)
    data = bytearray(shard.read_bytes())
    data[labels.offset + labels.size - 1] ^= 0x01  # last byte of the last string
    shard.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="'extras/labels'.*crc32c"):
        ck.read_checkpoint(prefix, names=["extras/labels"])
    ckpt = ck.open_checkpoint(prefix)
    table = entries["extras/table"]
    box, key = ckpt._parts[table.key][1]
    part = ckpt._plain_entry(key, ckpt._raw[key])
    data = bytearray(shard.read_bytes())
    data[part.offset] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="crc32c"):
        ck.read_checkpoint(prefix, names=["extras/table"])


def test_wrong_prefix_says_what_is_missing_and_what_is_near(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = copy_fixture("slim", tmp_path)
    wrong = prefix.with_name("model.ckpt")
    with pytest.raises(FormatError) as err:
        ck.read_checkpoint(wrong)
    msg = str(err.value)
    assert "model.ckpt.index is missing" in msg and "model.ckpt-3" in msg
    assert "model.ckpt-3" in _cli_error(wrong, capsys)
    (prefix.parent / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-9"\n')
    with pytest.raises(FormatError, match=r"model.ckpt-9.*named by .*checkpoint.*model.ckpt-3"):
        ck.resolve_prefix(prefix.parent)
    (prefix.parent / "checkpoint").write_text("model_checkpoint_path: model.ckpt-3 {\n")
    with pytest.raises(FormatError, match="not a TensorFlow `checkpoint` state file"):
        ck.resolve_prefix(prefix.parent)
    (prefix.parent / "checkpoint").write_text("future_field " + "{ a " * 100_000)
    with pytest.raises(FormatError, match="braces nest too deeply"):
        ck.resolve_prefix(prefix.parent)
    (prefix.parent / "checkpoint").write_text('all_model_checkpoint_paths: "model.ckpt-3"\n')
    with pytest.raises(FormatError, match="names no model_checkpoint_path"):
        ck.resolve_prefix(prefix.parent)


def test_missing_shard_and_more_shards_than_files(tmp_path: pathlib.Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    prefix = copy_fixture("slim", tmp_path)
    _shard(prefix, 1).unlink()
    with pytest.raises(FormatError, match=r"names 2 data shards but only 1 exist"):
        ck.checkpoint_entries(prefix)
    _shard(prefix, 0).rename(_shard(prefix, 0, 3))  # two files, neither the one named
    _shard(prefix, 1, 3).touch()
    with pytest.raises(FormatError, match=r"data shard model.ckpt-3.data-00000-of-00002 is "
                                          r"missing \(and 1 more\); present: "):
        ck.checkpoint_entries(prefix)
    assert "missing" in _cli_error(prefix, capsys)


def test_header_claiming_many_shards(tmp_path: pathlib.Path) -> None:
    prefix = copy_fixture("slim", tmp_path)

    def many(records: list[tuple[bytes, Any]]) -> None:
        records[0][1].num_shards = 10**9  # checked against the files, not looped over

    edit_index(prefix, many)
    with pytest.raises(FormatError, match="names 1000000000 data shards but only 2 exist"):
        ck.checkpoint_entries(prefix)


def _edited(tmp_path: pathlib.Path, edit: Callable[[Any], None],
            name: str = "InceptionV4/Conv2d_1a_3x3/weights") -> pathlib.Path:
    prefix = copy_fixture("slim", tmp_path)
    edit_index(prefix, lambda records: edit(entry_of(records, name)))
    return prefix


def test_shard_id_out_of_range(tmp_path: pathlib.Path) -> None:
    prefix = _edited(tmp_path, lambda e: setattr(e, "shard_id", 7))
    with pytest.raises(FormatError, match=r"'InceptionV4/Conv2d_1a_3x3/weights': shard id 7 is "
                                          r"out of range \(the header names 2 shards\)"):
        ck.checkpoint_entries(prefix)


def test_two_gigabyte_tensor_in_a_small_shard_fails_before_allocating(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    def huge(entry: Any) -> None:
        del entry.shape.dim[:]
        entry.shape.dim.add().size = 2**29  # float32: 2 GiB
        entry.size = 2**31

    prefix = _edited(tmp_path, huge)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=r"2147483648 bytes at offset 144 lie outside the "
                                              r"496-byte shard"):
            ck.read_checkpoint(prefix)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20
    _cli_error(prefix, capsys)


def test_shape_disagreeing_with_the_stored_size(tmp_path: pathlib.Path) -> None:
    def bigger(entry: Any) -> None:
        entry.shape.dim[0].size = 2**40  # the 288 bytes stay

    prefix = _edited(tmp_path, bigger)
    with pytest.raises(FormatError, match=r"shape \[1099511627776, 2, 3, 4\] of DT_FLOAT "
                                          r"needs 105553116266496 bytes but the entry stores 288"):
        ck.checkpoint_entries(prefix)
    prefix = _edited(tmp_path / "neg", lambda e: setattr(e.shape.dim[1], "size", -2))
    with pytest.raises(FormatError, match="negative dimension"):
        ck.checkpoint_entries(prefix)
    prefix = _edited(tmp_path / "over", lambda e: setattr(e.shape.dim[1], "size", 2**62))
    with pytest.raises(FormatError, match="more than any tensor can hold"):
        ck.checkpoint_entries(prefix)


@pytest.mark.parametrize("damage", ["garbage", "short", "magic", "block"])
def test_index_that_is_not_an_sstable(tmp_path: pathlib.Path, damage: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    prefix = copy_fixture("slim", tmp_path)
    index = prefix.with_name(prefix.name + ".index")
    data = bytearray(index.read_bytes())
    if damage == "garbage":
        data = bytearray(np.random.default_rng(0).bytes(2000))
    elif damage == "short":
        data = data[:30]
    elif damage == "magic":
        data[-1] ^= 0xFF
    else:
        data[10] ^= 0x01  # inside the first data block: its crc32c fails
    index.write_bytes(bytes(data))
    with pytest.raises(FormatError) as err:
        ck.checkpoint_entries(prefix)
    msg = str(err.value)
    assert msg.startswith(f"{index}: not a TensorFlow checkpoint index (SSTable)")
    assert {"garbage": "magic", "short": "footer", "magic": "magic",
            "block": "crc32c"}[damage] in msg
    _cli_error(prefix, capsys)


def test_index_whose_entries_are_not_protobuf(tmp_path: pathlib.Path) -> None:
    from tf_checkpoint_support import write_table

    prefix = copy_fixture("slim", tmp_path)
    index = prefix.with_name(prefix.name + ".index")
    write_table(index, [(b"", b"\x08\x02"), (b"a", b"\xff\xff\xff")])
    with pytest.raises(FormatError, match="the entry of 'a' is not a valid protobuf record"):
        ck.checkpoint_entries(prefix)
    write_table(index, [(b"a", b"")])
    with pytest.raises(FormatError, match="no header entry"):
        ck.checkpoint_entries(prefix)


def test_newer_format_version_is_refused(tmp_path: pathlib.Path) -> None:
    prefix = copy_fixture("slim", tmp_path)

    def newer(records: list[tuple[bytes, Any]]) -> None:
        records[0][1].version.min_consumer = 2

    edit_index(prefix, newer)
    with pytest.raises(FormatError, match="min_consumer 2"):
        ck.checkpoint_entries(prefix)


def test_bool_bytes_other_than_zero_and_one(tmp_path: pathlib.Path) -> None:
    prefix = copy_fixture("slim", tmp_path)
    entry = next(e for e in ck.checkpoint_entries(prefix) if e.name == "extras/bool")
    shard = _shard(prefix, entry.shard)
    data = bytearray(shard.read_bytes())
    data[entry.offset] = 2
    shard.write_bytes(bytes(data))
    new_crc = crc.mask(crc.crc32c(bytes(data[entry.offset:entry.offset + entry.size])))
    edit_index(prefix, lambda r: setattr(entry_of(r, "extras/bool"), "crc32c", new_crc))
    with pytest.raises(FormatError, match="'extras/bool': a bool value is neither 0 nor 1"):
        ck.read_checkpoint(prefix, names=["extras/bool"])


def test_partitioned_variable_with_a_missing_or_overlapping_slice(tmp_path: pathlib.Path) -> None:
    prefix = copy_fixture("slim", tmp_path)
    name = "InceptionV4/Logits/Logits/weights"

    def drop(records: list[tuple[bytes, Any]]) -> None:
        records[:] = [(k, v) for k, v in records if not (k.startswith(b"\x00" + name.encode())
                                                          and k.endswith(b"\x83\x82\x80\x85"))]

    edit_index(prefix, drop)
    with pytest.raises(FormatError, match=rf"'{name}': the entry of its slice \[3:5, 0:5\] is "
                                          "missing"):
        ck.checkpoint_entries(prefix)
    prefix = copy_fixture("slim", tmp_path / "overlap")

    def overlap(records: list[tuple[bytes, Any]]) -> None:
        full = entry_of(records, name)
        full.slices[1].extent[0].start = 2  # [2:4] overlaps [0:3]; [4:5] is then uncovered
        old = [k for k, _ in records if k.startswith(b"\x00" + name.encode())][1]
        new = ck.slice_key(name.encode(), [(2, 2), (0, 5)])
        records[:] = [(new if k == old else k, v) for k, v in records]

    edit_index(prefix, overlap)
    with pytest.raises(FormatError, match=r"slices \[2:4, 0:5\] and \[0:3, 0:5\] overlap"):
        ck.checkpoint_entries(prefix)


def test_string_lengths_running_past_the_entry(tmp_path: pathlib.Path) -> None:
    prefix = copy_fixture("slim", tmp_path)
    entry = next(e for e in ck.checkpoint_entries(prefix) if e.name == "extras/labels")
    shard = _shard(prefix, entry.shard)
    data = bytearray(shard.read_bytes())
    data[entry.offset] = 0x7F  # first length 10 -> 127
    shard.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="'extras/labels': 5 strings of 335 bytes"):
        ck.read_checkpoint(prefix, names=["extras/labels"], verify=False)


def test_big_endian_bundle_is_byte_swapped_like_tensorflow(tmp_path: pathlib.Path) -> None:
    # A big-endian machine's bundle: the same values with each item byte-reversed, checksums
    # over the bytes as stored (BundleReader swaps after checking). Made from the fixture.
    prefix = copy_fixture("slim", tmp_path)
    _, _, values = expected("slim")
    ckpt = ck.open_checkpoint(prefix)
    shards = [bytearray(p.read_bytes()) for p in ckpt.shard_paths]
    crcs: dict[bytes, int] = {}
    parts = [(e, e.numpy_dtype) for e in ckpt.entries if not e.slices]
    parts += [(ckpt._plain_entry(k, ckpt._raw[k]), e.numpy_dtype) for e in ckpt.entries
              if e.slices for _, k in ckpt._parts[e.key]]
    for entry, dtype in parts:
        assert dtype is not None
        if dtype.kind == "O" or dtype.itemsize == 1:
            continue  # strings: tested elsewhere; single bytes do not swap
        lo, hi = entry.offset, entry.offset + entry.size
        item = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
        raw = np.frombuffer(bytes(shards[entry.shard][lo:hi]), f"u{item}")
        swapped = raw.byteswap().tobytes()
        shards[entry.shard][lo:hi] = swapped
        crcs[entry.key] = crc.mask(crc.crc32c(swapped))
    for path, data in zip(ckpt.shard_paths, shards):
        path.write_bytes(bytes(data))

    def big(records: list[tuple[bytes, Any]]) -> None:
        records[0][1].endianness = 1
        for key, proto in records[1:]:
            if key in crcs:
                proto.crc32c = crcs[key]

    edit_index(prefix, big)
    names = [e.name for e in ckpt.entries if e.numpy_dtype is not None
             and e.numpy_dtype.kind != "O"]
    got = ck.read_checkpoint(prefix, names=names)
    for name in names:
        assert same_bits(got[name], values[name]), name
    assert struct.pack(">q", 2**40 + 3) == bytes(shards[1][-8:])  # the file really is swapped
