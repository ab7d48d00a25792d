"""TF V2 checkpoints read without TensorFlow (modelport.formats.tf.checkpoint): every value and
dtype bit-exact against what TensorFlow's own reader returned for the committed fixtures
(tools/make_tf_fixtures.py, TF 2.21), and against live TensorFlow when it is installed."""

from __future__ import annotations

import mmap
import os
import pathlib
import shutil

import numpy as np
import pytest

pytest.importorskip("google_crc32c", reason="the `tf` extra (google-crc32c) is not installed")
pytest.importorskip("ml_dtypes", reason="the `tf` extra (ml_dtypes) is not installed")
from tf_checkpoint_support import CHECKPOINTS, FIXTURES, copy_fixture, expected, same_bits

from modelport.cli import main as cli_main
from modelport.errors import FormatError
from modelport.formats.tf import checkpoint as ck


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_every_variable_is_what_tensorflow_read(name: str) -> None:
    prefix, variables, values = expected(name)
    got = ck.read_checkpoint(prefix)
    assert list(got) == [v["name"] for v in variables]  # list_variables' order and names
    for var in variables:
        value = got[var["name"]]
        assert str(value.dtype) == var["dtype"], var["name"]
        assert list(value.shape) == var["shape"], var["name"]
        assert same_bits(value, values[var["name"]]), var["name"]


def test_slim_fixture_covers_the_cases() -> None:
    # The fixture must keep exercising what the reader claims: two shards, partitioned
    # variables, unaligned values, every dtype (a regenerated fixture that lost one fails here).
    ckpt = ck.open_checkpoint(FIXTURES / "slim")
    assert ckpt.num_shards == 2 and len(ckpt.shard_paths) == 2
    entries = {e.name: e for e in ckpt.entries}
    assert {e.shard for e in entries.values() if not e.slices} == {0, 1}
    assert len(entries["InceptionV4/Logits/Logits/weights"].slices) == 3
    assert entries["extras/table"].slices == (((0, 4), (0, 2)), ((0, 4), (2, 2)),
                                              ((0, 4), (4, 2)))
    dtypes = {e.dtype for e in entries.values()}
    assert dtypes >= {"DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16", "DT_INT8", "DT_INT16",
                      "DT_INT32", "DT_INT64", "DT_UINT8", "DT_UINT16", "DT_UINT32",
                      "DT_UINT64", "DT_BOOL", "DT_COMPLEX64", "DT_COMPLEX128", "DT_STRING"}
    unaligned = [e for e in entries.values() if not e.slices and e.numpy_dtype is not None
                 and e.numpy_dtype.kind != "O" and e.offset % e.numpy_dtype.alignment]
    assert unaligned


def test_values_are_read_only_views_of_the_mapped_shard_when_aligned() -> None:
    ckpt = ck.open_checkpoint(FIXTURES / "slim")
    entry = next(e for e in ckpt.entries if e.name == "InceptionV4/Conv2d_1a_3x3/weights")
    assert entry.offset % 4 == 0
    value = ckpt.read(entry)
    assert not value.flags.writeable
    base = value
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    assert isinstance(base, mmap.mmap)  # no copy: the array is the file's mapping
    for e in ckpt.entries:
        got = ckpt.read(e)
        assert not got.flags.writeable
        if got.dtype.kind != "O":
            assert got.flags.aligned, e.name  # unaligned values are copied, aligned


def test_many_shards_are_read_into_owned_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    # Past MAX_MAPPED_SHARDS no shard is mapped (each mapping holds a file descriptor while
    # its arrays live): each value is read into an array of its own, with the same bits.
    monkeypatch.setattr(ck, "MAX_MAPPED_SHARDS", 1)
    _, _, values = expected("slim")
    ckpt = ck.open_checkpoint(FIXTURES / "slim")
    got = ckpt.read_all()
    assert not ckpt._maps
    for name, value in values.items():
        assert same_bits(got[name], value), name
        assert not got[name].flags.writeable


def test_verify_false_skips_the_crc(tmp_path: pathlib.Path) -> None:
    prefix = copy_fixture("slim", tmp_path)
    entry = next(e for e in ck.checkpoint_entries(prefix) if e.name == "global_step")
    shard = prefix.with_name(f"{prefix.name}.data-{entry.shard:05d}-of-00002")
    data = bytearray(shard.read_bytes())
    data[entry.offset] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="'global_step'.*crc32c"):
        ck.read_checkpoint(prefix)
    got = ck.read_checkpoint(prefix, verify=False, names=["global_step"])
    assert int(got["global_step"]) == (2**40 + 3) ^ 0x01


def test_names_selects_variables() -> None:
    got = ck.read_checkpoint(FIXTURES / "slim", names=["extras/labels", "global_step"])
    assert list(got) == ["extras/labels", "global_step"]
    assert got["global_step"].shape == () and got["global_step"].dtype == np.int64
    with pytest.raises(FormatError, match="no variable 'nope'"):
        ck.read_checkpoint(FIXTURES / "slim", names=["nope"])


@pytest.mark.parametrize("form", ["prefix", "folder", "state", "index", "data", "meta"])
def test_every_way_of_naming_a_checkpoint_resolves_to_its_prefix(form: str) -> None:
    folder = FIXTURES / "slim"
    prefix = folder / "model.ckpt-3"
    given = {"prefix": prefix, "folder": folder, "state": folder / "checkpoint",
             "index": folder / "model.ckpt-3.index",
             "data": folder / "model.ckpt-3.data-00001-of-00002",
             "meta": folder / "model.ckpt-3.meta"}[form]
    assert ck.resolve_prefix(given) == prefix


def test_checkpoint_state_with_absolute_and_nested_paths(tmp_path: pathlib.Path) -> None:
    prefix = copy_fixture("tf2", tmp_path)
    state = tmp_path / "elsewhere" / "checkpoint"
    state.parent.mkdir()
    state.write_text(f'model_checkpoint_path: "{prefix}"\n'
                     f'all_model_checkpoint_paths: "{prefix}"\n'
                     "all_model_checkpoint_timestamps: 1700000000.5\n")
    assert ck.resolve_prefix(state.parent) == prefix
    nested = tmp_path / "runs"
    shutil.copytree(prefix.parent, nested / "step_1")
    (nested / "checkpoint").write_text('model_checkpoint_path: "step_1/ckpt-1"\n')
    assert ck.resolve_prefix(nested) == nested / "step_1" / "ckpt-1"
    _, variables, _ = expected("tf2")
    assert len(ck.read_checkpoint(nested)) == len(variables)


def test_folder_without_state_file_uses_its_single_checkpoint(tmp_path: pathlib.Path) -> None:
    prefix = copy_fixture("slim", tmp_path)
    (prefix.parent / "checkpoint").unlink()
    assert ck.resolve_prefix(prefix.parent) == prefix
    shutil.copy(prefix.with_name(prefix.name + ".index"), prefix.parent / "other.index")
    with pytest.raises(FormatError, match="2 checkpoints"):
        ck.resolve_prefix(prefix.parent)


def test_variant_tensors_are_listed_but_not_read(capsys: pytest.CaptureFixture[str]) -> None:
    # A TF2 checkpoint of a tf.data iterator: its state is a DT_VARIANT (serialized C++
    # objects) that TF's own get_tensor cannot return either.
    prefix, variables, values = expected("variant")
    entries = ck.checkpoint_entries(prefix)
    assert [(e.name, e.shape) for e in entries] == [(v["name"], tuple(v["shape"]))
                                                    for v in variables]
    assert entries[1].dtype == "DT_VARIANT" and variables[1]["tf_dtype"] == "variant"
    with pytest.raises(FormatError, match=r"'data/.ATTRIBUTES/ITERATOR_STATE': dtype "
                                          r"DT_VARIANT cannot be read.*Fix: read the other"):
        ck.read_checkpoint(prefix)
    got = ck.read_checkpoint(prefix, names=list(values))
    assert all(same_bits(got[n], values[n]) for n in values)
    source = ck.read_checkpoint_source(prefix)
    assert list(source.variables) == list(values)
    assert source.notes == ["left out data/.ATTRIBUTES/ITERATOR_STATE (DT_VARIANT): not a "
                            "numeric tensor"]
    assert cli_main(["tf", "ls", "--verify", str(prefix)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(
        "every crc32c checked except 1 variable modelport cannot read (DT_VARIANT)")


def test_weight_source() -> None:
    source = ck.read_checkpoint_source(FIXTURES / "tf2")
    _, variables, values = expected("tf2")
    assert source.kind == "tf-checkpoint" and source.layers is None
    assert list(source.variables) == [v["name"] for v in variables]
    for name, var in source.variables.items():
        assert var.name == name and same_bits(var.value, values[name])
    assert source.total_bytes == sum(v.value.nbytes for v in source.variables.values())


def test_ordered_code_numbers_follow_tensorflows_examples() -> None:
    # tensorflow/core/lib/strings/ordered_code.cc: 0x424242 -> f0 42 42 42, -0x800 -> 38 00;
    # one byte covers [-64, 64).
    assert ck._signed_num_increasing(0x424242) == bytes.fromhex("f0424242")
    assert ck._signed_num_increasing(-0x800) == bytes.fromhex("3800")
    assert ck._signed_num_increasing(63) == b"\xbf" and ck._signed_num_increasing(-64) == b"\x40"
    assert ck._signed_num_increasing(-1) == b"\x7f" and ck._signed_num_increasing(0) == b"\x80"
    assert ck._num_increasing(0) == b"\x00" and ck._num_increasing(258) == b"\x02\x01\x02"
    # Escapes in names: 0x00 -> 00 ff, 0xff -> ff 00, then the separator 00 01.
    assert ck.slice_key(b"a\x00\xff", [(0, -1)]) == b"\x00a\x00\xff\xff\x00\x00\x01\x01\x01\x80\x7f"
    # Monotone over a wide range (the property OrderedCode exists for), all lengths 1..10.
    values = sorted({0, 1, -1, 63, 64, -64, -65, 2**13, -2**13, 2**55, -2**55, 2**62,
                     -2**63, 2**63 - 1} | {(-1) ** k * 7**k for k in range(23)})
    codes = [ck._signed_num_increasing(v) for v in values]
    assert codes == sorted(codes) and {len(c) for c in codes} == set(range(1, 11))


def test_cli_ls_lists_like_list_variables(capsys: pytest.CaptureFixture[str]) -> None:
    _, variables, values = expected("slim")
    assert cli_main(["tf", "ls", str(FIXTURES / "slim")]) == 0
    lines = capsys.readouterr().out.splitlines()
    want = [f"{v['name']} ({_dt(v['dtype'])}) [{','.join(map(str, v['shape']))}]"
            for v in variables]
    assert lines[:-1] == want
    # The total is every stored byte: TF packs the values densely, so it is the shards' size.
    shards = sum(p.stat().st_size for p in (FIXTURES / "slim").glob("*.data-*"))
    assert lines[-1] == f"{len(variables)} variables, 1.24 KB ({shards:,} bytes)"


def _dt(numpy_name: str) -> str:
    return {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "float16": "DT_HALF",
            "bfloat16": "DT_BFLOAT16", "object": "DT_STRING", "bool": "DT_BOOL",
            "complex64": "DT_COMPLEX64", "complex128": "DT_COMPLEX128"}.get(
        numpy_name, "DT_" + numpy_name.upper())


def test_cli_ls_verify_reads_every_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["tf", "ls", "--verify", str(FIXTURES / "tf2" / "ckpt-1.index")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("every crc32c checked")


@pytest.mark.slow
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_against_live_tensorflow(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    tf = pytest.importorskip("tensorflow", reason="TensorFlow not installed: the same checks "
                                                  "ran against its stored reading above")
    prefix, _, _ = expected(name)
    reader = tf.train.load_checkpoint(str(prefix))
    listed = tf.train.list_variables(str(prefix))
    got = ck.read_checkpoint(prefix)
    assert list(got) == [n for n, _ in listed]
    for var, shape in listed:
        raw = reader.get_tensor(var)
        ref = np.asarray(raw, dtype=object) if isinstance(raw, bytes) else np.asarray(raw)
        assert list(got[var].shape) == list(shape)
        assert same_bits(got[var], ref), var
    assert cli_main(["tf", "ls", str(prefix)]) == 0
    lines = capsys.readouterr().out.splitlines()[:-1]
    dtypes = reader.get_variable_to_dtype_map()
    from tensorflow.core.framework import types_pb2

    assert lines == [f"{n} ({types_pb2.DataType.Name(dtypes[n].as_datatype_enum)}) "
                     f"[{','.join(map(str, s))}]" for n, s in listed]


def test_reader_imports_neither_torch_nor_tensorflow() -> None:
    import subprocess
    import sys

    code = ("import sys; from modelport.formats.tf.checkpoint import read_checkpoint; "
            f"read_checkpoint({str(FIXTURES / 'slim')!r}); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
