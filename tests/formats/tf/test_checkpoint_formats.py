"""The pieces under the TF checkpoint reader: our schema (TensorFlow's field numbers, under a
package that coexists with TensorFlow's), the LevelDB table reader (several blocks, restarts,
snappy refused), the masked crc32c, the memory limit, and `modelport tf ls` on Keras files."""

from __future__ import annotations

import json
import pathlib
import sys
from collections import Counter

import pytest

pytest.importorskip("google_crc32c", reason="the `tf` extra (google-crc32c) is not installed")
pytest.importorskip("ml_dtypes", reason="the `tf` extra (ml_dtypes) is not installed")
from tf_checkpoint_support import FIXTURES, copy_fixture, expected, same_bits, write_table

from modelport.cli import main as cli_main
from modelport.errors import ConfigError, FormatError
from modelport.formats.tf import checkpoint as ck
from modelport.formats.tf import crc
from modelport.formats.tf.sstable import read_table
from modelport.schema.tf import checkpoint_state_pb2, tensor_bundle_pb2, trackable_object_graph_pb2

KERAS = FIXTURES.parent / "keras"


def _numbers(message: object) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]


def test_field_numbers_are_tensorflows() -> None:
    # From tensorflow/core/protobuf/tensor_bundle.proto, framework/{types,tensor_shape,
    # tensor_slice,versions}.proto, protobuf/trackable_object_graph.proto and
    # python/training/checkpoint_state.proto: what the bytes on disk depend on.
    tb = tensor_bundle_pb2
    assert _numbers(tb.BundleHeaderProto) == {"num_shards": 1, "endianness": 2, "version": 3}
    assert _numbers(tb.BundleEntryProto) == {"dtype": 1, "shape": 2, "shard_id": 3, "offset": 4,
                                             "size": 5, "crc32c": 6, "slices": 7}
    assert tb.BundleEntryProto.DESCRIPTOR.fields_by_name["crc32c"].type == 7  # fixed32
    assert _numbers(tb.TensorShapeProto) == {"dim": 2, "unknown_rank": 3}
    assert _numbers(tb.TensorShapeProto.Dim) == {"size": 1, "name": 2}
    assert _numbers(tb.TensorSliceProto.Extent) == {"start": 1, "length": 2}
    assert _numbers(tb.VersionDef) == {"producer": 1, "min_consumer": 2, "bad_consumers": 3}
    dt = tb.DataType
    assert (dt.DT_FLOAT, dt.DT_STRING, dt.DT_INT64, dt.DT_BOOL, dt.DT_BFLOAT16, dt.DT_HALF,
            dt.DT_UINT32, dt.DT_UINT64, dt.DT_FLOAT_REF) == (1, 7, 9, 10, 14, 19, 22, 23, 101)
    tog = trackable_object_graph_pb2.TrackableObjectGraph
    assert _numbers(tog) == {"nodes": 1}
    assert _numbers(tog.TrackableObject) == {"children": 1, "attributes": 2,
                                             "slot_variables": 3, "registered_saver": 4,
                                             "has_checkpoint_values": 5}
    assert _numbers(tog.TrackableObject.SerializedTensor) == {"name": 1, "full_name": 2,
                                                              "checkpoint_key": 3}
    assert _numbers(checkpoint_state_pb2.CheckpointState) == {
        "model_checkpoint_path": 1, "all_model_checkpoint_paths": 2,
        "all_model_checkpoint_timestamps": 3, "last_preserved_timestamp": 4}


def test_object_graph_of_the_tf2_fixture_parses() -> None:
    got = ck.read_checkpoint(FIXTURES / "tf2", names=["_CHECKPOINTABLE_OBJECT_GRAPH"])
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        got["_CHECKPOINTABLE_OBJECT_GRAPH"][()])
    keys = {a.checkpoint_key for node in graph.nodes for a in node.attributes}
    _, variables, _ = expected("tf2")
    assert keys == {v["name"] for v in variables} - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert {c.local_name for c in graph.nodes[0].children} >= {"model", "module", "step"}


def _fields(d: object, out: dict[str, tuple[int, int]],
            prefix: str = "") -> dict[str, tuple[int, int]]:
    for f in d.fields:  # type: ignore[attr-defined]
        out[prefix + d.name + "." + f.name] = (f.number, f.type)  # type: ignore[attr-defined]
    for n in d.nested_types:  # type: ignore[attr-defined]
        _fields(n, out, prefix + d.name + ".")  # type: ignore[attr-defined]
    return out


@pytest.mark.slow
def test_schema_matches_and_coexists_with_tensorflows() -> None:
    # TensorFlow's descriptors registered in the same process as ours (already imported above):
    # no clash, and the same numbers and wire types field for field.
    pytest.importorskip("tensorflow", reason="TensorFlow not installed: field numbers are "
                                             "checked against its documented values above")
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import tensor_bundle_pb2 as theirs
    from tensorflow.core.protobuf import trackable_object_graph_pb2 as their_graph
    from tensorflow.python.training import checkpoint_state_pb2 as their_state

    for ours, tf_module in ((tensor_bundle_pb2, theirs),
                            (trackable_object_graph_pb2, their_graph),
                            (checkpoint_state_pb2, their_state)):
        for name, d in tf_module.DESCRIPTOR.message_types_by_name.items():
            mine = ours.DESCRIPTOR.message_types_by_name[name]
            assert _fields(mine, {}) == _fields(d, {}), name
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    for name in ("TensorShapeProto", "TensorSliceProto", "VersionDef"):
        assert _fields(pool.FindMessageTypeByName(f"modelport.tf.{name}"), {}) == _fields(
            pool.FindMessageTypeByName(f"tensorflow.{name}"), {}), name
    assert {v.name: v.number for v in types_pb2.DataType.DESCRIPTOR.values} == {
        v.name: v.number for v in tensor_bundle_pb2.DataType.DESCRIPTOR.values}


def test_masked_crc32c() -> None:
    # crc32c("123456789") = 0xe3069283 (the standard check value); mask/unmask round-trip.
    assert crc.crc32c(b"123456789") == 0xE3069283
    assert crc.crc32c(memoryview(b"123456789")[2:]) == crc.crc32c(b"3456789")
    assert crc.crc32c(b"6789", crc.crc32c(b"12345")) == 0xE3069283
    assert crc.mask(0) == 0xA282EAD8
    assert all(crc.unmask(crc.mask(v)) == v for v in (0, 1, 0xFFFFFFFF, 0xE3069283, 2**31))
    big = bytes(range(256)) * 9000  # > one 1 MB chunk
    assert crc.crc32c(memoryview(big)) == crc.crc32c(big)


def test_index_in_many_small_blocks_with_restarts_reads_the_same(tmp_path: pathlib.Path) -> None:
    prefix = copy_fixture("slim", tmp_path)
    index = prefix.with_name(prefix.name + ".index")
    items = read_table(index)
    assert len(items) == 31  # the header, 24 variables, 6 slices
    write_table(index, items, block_entries=3)
    assert read_table(index) == items
    _, _, values = expected("slim")
    got = ck.read_checkpoint(prefix)
    assert all(same_bits(got[n], v) for n, v in values.items())


def test_snappy_blocks_are_refused_clearly(tmp_path: pathlib.Path) -> None:
    index = tmp_path / "x.index"
    write_table(index, [(b"", b"\x08\x01")], compression=1)
    with pytest.raises(FormatError, match=r"x.index: not a TensorFlow checkpoint index "
                                          r"\(SSTable\): the data block at offset 0 is "
                                          r"snappy-compressed"):
        read_table(index)


def test_unordered_keys_are_refused(tmp_path: pathlib.Path) -> None:
    index = tmp_path / "x.index"
    write_table(index, [(b"", b""), (b"b", b""), (b"a", b"")], block_entries=1)
    with pytest.raises(FormatError, match=r"keys are out of order \(b'a' after b'b'\)"):
        read_table(index)
    write_table(index, [(b"", b""), (b"b", b""), (b"a", b"")], block_entries=3)
    with pytest.raises(FormatError, match="key b'b' lies beyond its block's index key"):
        read_table(index)


@pytest.mark.slow
def test_large_index_written_by_tensorflow(tmp_path: pathlib.Path) -> None:
    # Thousands of variables: TensorFlow's table builder cuts its index into 256 KB blocks and
    # restarts the prefix compression every 16 keys; every value is still TensorFlow's.
    import hashlib

    from modelport.formats.tf import sstable

    tf = pytest.importorskip("tensorflow", reason="TensorFlow not installed")
    prefix = str(tmp_path / "many")
    names = [f"{hashlib.sha1(str(i).encode()).hexdigest()[:12]}/Mixed_{i:05d}/weights"
             for i in range(12000)]
    tensors = [tf.constant([float(i), -float(i)], tf.float32) for i in range(len(names))]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)
    data = pathlib.Path(prefix + ".index").read_bytes()
    footer = len(data) - sstable.FOOTER_SIZE
    _, _, pos = sstable._handle(data, footer, footer + 40)
    offset, size, _ = sstable._handle(data, pos, footer + 40)
    blocks = list(sstable._entries(sstable._block(data, offset, size, "index", footer), "index"))
    assert len(blocks) >= 2
    got = ck.read_checkpoint(prefix)
    reader = tf.train.load_checkpoint(prefix)
    assert sorted(got) == sorted(names)
    assert all(same_bits(got[n], reader.get_tensor(n)) for n in names[::97])


def test_missing_crc32c_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelport.optional import MissingDependencyError

    monkeypatch.setitem(sys.modules, "google_crc32c", None)
    monkeypatch.setattr(crc, "_MODULE", None)
    with pytest.raises(MissingDependencyError, match=r"checking TensorFlow checkpoint "
                                                     r"checksums .* needs google-crc32c.*"
                                                     r"pip install 'modelport\[tf\]'"):
        ck.read_checkpoint(FIXTURES / "slim")


def test_copies_are_checked_against_the_memory_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPORT_MEMORY_LIMIT", "100")
    with pytest.raises(ConfigError, match=r"needs .* of copies .* over the memory limit of "
                                          r"100 B. Fix: read fewer variables"):
        ck.read_checkpoint(FIXTURES / "slim")
    got = ck.read_checkpoint(FIXTURES / "slim", names=["InceptionV4/Conv2d_1a_3x3/weights"])
    assert got["InceptionV4/Conv2d_1a_3x3/weights"].nbytes == 288  # a view: nothing copied


def test_cli_ls_keras_files(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("h5py", reason="the `tf` extra (h5py) is not installed")
    meta = json.loads((KERAS / "expected.json").read_text())
    shapes = Counter(tuple(v["shape"]) for layer in meta["layers"] for v in layer["variables"])
    for name in ("model.keras", "model.weights.h5", "keras2_model.h5"):
        assert cli_main(["tf", "ls", str(KERAS / name)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[-1].startswith(f"{sum(shapes.values())} variables, ")
        listed = Counter(tuple(int(d) for d in line.rsplit("[", 1)[1][:-1].split(",") if d)
                         for line in lines[:-1])
        assert listed == shapes, name
        assert all(" (DT_FLOAT) [" in line for line in lines[:-1])


def test_cli_ls_hdf5_that_is_not_keras(tmp_path: pathlib.Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    h5py = pytest.importorskip("h5py", reason="h5py not installed")
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as fh:
        fh["x"] = [1, 2, 3]
    assert cli_main(["tf", "ls", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err
