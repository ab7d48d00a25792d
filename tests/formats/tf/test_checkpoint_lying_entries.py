"""An index entry that lies about where its bytes are (offset / size past the shard, a negative
offset) or a data shard cut short: one-line FormatError naming the shard and the variable,
raised from the index alone, before any view of the shard is made."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

pytest.importorskip("google_crc32c", reason="the `tf` extra (google-crc32c) is not installed")
pytest.importorskip("ml_dtypes", reason="the `tf` extra (ml_dtypes) is not installed")
from tf_checkpoint_support import copy_fixture, edit_index, entry_of

from modelport.errors import FormatError
from modelport.formats.tf import checkpoint as ck

NAME = "InceptionV4/Conv2d_1a_3x3/weights"  # 288 bytes at offset 144 of the 496-byte shard 0


def _lying(tmp_path: pathlib.Path, **fields: int) -> pathlib.Path:
    prefix = copy_fixture("slim", tmp_path)

    def edit(records: list[tuple[bytes, Any]]) -> None:
        entry = entry_of(records, NAME)
        for key, value in fields.items():
            setattr(entry, key, value)

    edit_index(prefix, edit)
    return prefix


@pytest.mark.parametrize(("fields", "where"), [
    ({"offset": 496}, "288 bytes at offset 496"),  # starts at the end
    ({"offset": 209}, "288 bytes at offset 209"),  # ends one byte past the end
    ({"offset": -8}, "288 bytes at offset -8"),
    ({"offset": 2**63 - 1}, f"288 bytes at offset {2**63 - 1}"),
])
def test_entry_past_the_shard_is_refused_before_mapping(tmp_path: pathlib.Path,
                                                        fields: dict[str, int],
                                                        where: str, monkeypatch) -> None:
    prefix = _lying(tmp_path, **fields)

    def no_map(self: ck.Checkpoint, shard: int) -> None:
        raise AssertionError("the shard was mapped")

    monkeypatch.setattr(ck.Checkpoint, "_map", no_map)
    with pytest.raises(FormatError) as err:
        ck.read_checkpoint(prefix)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(str(prefix) + ".data-00000-of-00002: variable '" + NAME + "'")
    assert where in msg and "lie outside the 496-byte shard" in msg


def test_entry_ending_at_the_shard_end_is_read(tmp_path: pathlib.Path) -> None:
    """The bound is offset + size <= the shard's size: the last byte may be used."""
    prefix = copy_fixture("slim", tmp_path)
    shard = prefix.with_name(prefix.name + ".data-00000-of-00002")
    entry = next(e for e in ck.checkpoint_entries(prefix) if e.name == NAME)
    before = ck.read_checkpoint(prefix, names=[NAME])[NAME].copy()
    data = shard.read_bytes()
    shard.write_bytes(data + data[entry.offset:entry.offset + entry.size])  # a copy at the end
    edit_index(prefix, lambda r: setattr(entry_of(r, NAME), "offset", len(data)))
    moved = ck.read_checkpoint(prefix, names=[NAME])[NAME]
    assert moved.tobytes() == before.tobytes() and moved.shape == before.shape


def test_shard_cut_short_names_every_reader_path(tmp_path: pathlib.Path) -> None:
    """Truncation is found by listing too (checkpoint_entries reads no value)."""
    prefix = copy_fixture("slim", tmp_path)
    shard = prefix.with_name(prefix.name + ".data-00000-of-00002")
    shard.write_bytes(shard.read_bytes()[:200])
    for call in (ck.checkpoint_entries, ck.read_checkpoint):
        with pytest.raises(FormatError, match=r"data-00000-of-00002: variable .*lie outside "
                                              r"the 200-byte shard \(truncated or corrupt\)"):
            call(prefix)
