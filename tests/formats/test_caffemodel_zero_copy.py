"""The caffemodel reader against protobuf's own parse: bit-identical arrays on every golden
caffemodel (V1 included), packed float data as zero-copy views of the mapped file, legacy
unpacked values decoded in runs, and every size/truncation problem a one-line FormatError."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from golden_support import CAFFE_CASES
from modelport.errors import FormatError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.blobproto import decode_blob
from modelport.formats.caffe.caffemodel import read_caffemodel
from modelport.formats.caffe.mapped import mapping_of, owned_copy
from modelport.formats.caffe.wire import encode_key, encode_varint

WEIGHTS = sorted(CAFFE_CASES.glob("*/weights.caffemodel"))


def _protobuf_blobs(path: str) -> list[tuple[str, list[np.ndarray]]]:
    """(layer name, blobs as float32 arrays with Caffe's shape) as protobuf parses the file."""
    msg = caffe_pb2.NetParameter()
    with open(path, "rb") as fh:
        msg.ParseFromString(fh.read())

    def arrays(blobs) -> list[np.ndarray]:
        out = []
        for b in blobs:
            if b.HasField("shape"):
                shape = tuple(b.shape.dim)
            elif any(b.HasField(f) for f in ("num", "channels", "height", "width")):
                shape = (b.num, b.channels, b.height, b.width)
            else:
                shape = ()
            values = b.data if len(b.data) else b.double_data
            out.append(np.array(values, dtype=np.float32).reshape(shape))
        return out

    layers = [(lp.name, arrays(lp.blobs)) for lp in msg.layer]
    for v1 in msg.layers:
        blobs = v1.blobs if len(v1.blobs) else v1.layer.blobs
        layers.append((v1.name or v1.layer.name, arrays(blobs)))
    return layers


def test_every_golden_caffemodel_is_checked() -> None:
    assert len(WEIGHTS) >= 10
    assert any(p.parent.name == "legacy_v1" for p in WEIGHTS)


@pytest.mark.parametrize("path", WEIGHTS, ids=[p.parent.name for p in WEIGHTS])
def test_reader_arrays_are_bit_identical_to_protobuf(path) -> None:
    ours = read_caffemodel(str(path))
    theirs = _protobuf_blobs(str(path))
    # V2 files list `layer` only, V1 files `layers` only: the orders then agree
    assert [s.name for s in ours] == [name for name, _ in theirs]
    for stored, (name, ref) in zip(ours, theirs):
        assert len(stored.blobs) == len(ref), name
        for i, (blob, expected) in enumerate(zip(stored.blobs, ref)):
            got = np.asarray(blob.data)
            assert got.dtype == np.float32 and got.shape == expected.shape, (name, i)
            # bit patterns, not values: -0.0 and NaN payloads must survive as stored
            assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (name, i)
            if got.size:  # Caffe writes packed float data: a view of the mapping, no copy
                assert mapping_of(got) is not None, (name, i)
                assert not got.flags.writeable


def test_owned_copy_is_writable_and_independent() -> None:
    blob = next(b for s in read_caffemodel(str(WEIGHTS[0])) for b in s.blobs if b.data.size)
    copy = owned_copy(blob.data)
    assert copy.flags.writeable and copy.flags.owndata and mapping_of(copy) is None
    assert np.array_equal(copy.view(np.uint32), blob.data.view(np.uint32))
    copy.reshape(-1)[0] += 1  # the file's view does not change
    assert not np.array_equal(copy, blob.data)


def _unpacked(number: int, fmt: str, values) -> bytes:
    key = encode_key(number, 5 if fmt == "<f" else 1)
    return b"".join(key + struct.pack(fmt, v) for v in values)


def _shape(*dims: int) -> bytes:
    payload = caffe_pb2.BlobShape(dim=list(dims)).SerializeToString()
    return encode_key(7, 2) + encode_varint(len(payload)) + payload


def _packed_floats(values) -> bytes:
    payload = np.asarray(values, dtype="<f4").tobytes()
    return encode_key(5, 2) + encode_varint(len(payload)) + payload


def _check_like_protobuf(raw: bytes) -> np.ndarray:
    ref = caffe_pb2.BlobProto()
    ref.ParseFromString(raw)
    values = ref.data if len(ref.data) else ref.double_data
    expected = np.array(values, dtype=np.float32).reshape(tuple(ref.shape.dim))
    got = decode_blob(raw, 0, len(raw), "t").data
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    return got


def test_unpacked_legacy_floats_mixed_with_packed_ones() -> None:
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(n).astype(np.float32) for n in (70000, 3, 5))
    raw = _unpacked(5, "<f", a) + _shape(2, 35004) + _packed_floats(b) + _unpacked(5, "<f", c)
    got = _check_like_protobuf(raw)
    assert got.flags.writeable  # gathered from between the keys: its own memory


def test_unpacked_double_data() -> None:
    values = np.linspace(-3, 3, 12)
    got = _check_like_protobuf(_shape(3, 4) + _unpacked(8, "<d", values))
    assert got.dtype == np.float32


@pytest.mark.parametrize("cut", [1, 3, 4, 6])
def test_truncated_unpacked_value_is_a_format_error(cut: int) -> None:
    raw = _shape(3) + _unpacked(5, "<f", [1.0, 2.0, 3.0])
    with pytest.raises(FormatError, match="truncated|needs 3 values"):
        decode_blob(raw[:-cut], 0, len(raw) - cut, "t")


def test_truncated_packed_field_never_views_past_the_end(tmp_path) -> None:
    blob = _shape(4, 4) + _packed_floats(np.arange(16))
    layer = caffe_pb2.LayerParameter(name="ip", type="InnerProduct").SerializeToString()
    layer += encode_key(7, 2) + encode_varint(len(blob)) + blob
    full = encode_key(100, 2) + encode_varint(len(layer)) + layer
    path = tmp_path / "cut.caffemodel"
    path.write_bytes(full[:-9])  # the file ends inside the packed floats
    with pytest.raises(FormatError, match="truncated") as info:
        read_caffemodel(str(path))
    assert "\n" not in str(info.value) and "cut.caffemodel" in str(info.value)


def test_declared_size_disagreeing_with_the_values_is_a_format_error() -> None:
    raw = _shape(4, 5) + _packed_floats(np.arange(19))
    with pytest.raises(FormatError, match=r"needs 20 values but the file holds 19"):
        decode_blob(raw, 0, len(raw), "t")


def test_a_module_built_for_writing_shares_the_file_a_returned_one_owns_its_weights() -> None:
    import torch

    from modelport.backends.torch_module import build_module
    from modelport.formats.caffe.net_loader import load_net
    from modelport.layers.base import weights_shared_with_file

    case = CAFFE_CASES / "conv_basic"
    net = load_net(case / "net.prototxt", case / "weights.caffemodel", "test")
    stored = next(b.data for layer in net.layers for b in layer.blobs)
    owned = build_module(net)
    with weights_shared_with_file():
        shared = build_module(net)
    first = {k: v for k, v in shared.state_dict().items()}
    assert first.keys() == owned.state_dict().keys()
    for key, value in owned.state_dict().items():
        assert torch.equal(value, first[key]), key
    ptrs = {t.data_ptr() for t in shared.state_dict().values()}
    assert stored.ctypes.data in ptrs  # the very bytes of the mapped file
    assert stored.ctypes.data not in {t.data_ptr() for t in owned.state_dict().values()}
    weight = next(owned.parameters())
    with torch.no_grad():
        weight.add_(1.0)  # the returned module's weights are its own, writable
    assert not np.array_equal(weight.detach().numpy(), stored.reshape(weight.shape))


def test_the_cli_writes_the_same_bytes_as_the_api(tmp_path) -> None:
    import contextlib
    import io

    from modelport.cli import main
    from modelport.convert import convert

    case = CAFFE_CASES / "conv_basic"
    convert(case / "net.prototxt", case / "weights.caffemodel", tmp_path / "api")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["convert", str(case / "net.prototxt"), str(case / "weights.caffemodel"),
                     "-o", str(tmp_path / "cli")]) == 0
    for name in ("model.safetensors", "model.py"):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
