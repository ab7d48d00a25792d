"""Every input the fuzzers ever crashed a reader with (tests/fuzz/corpus/<reader>/) is replayed:
the reader returns or raises a ModelportError, within the memory bound. Each fixed bug also has
a test stating what Caffe does with that input."""

from __future__ import annotations

import struct

import pytest
from fuzz_support import (
    CORPUS,
    LEN,
    TARGETS,
    VARINT,
    PbField,
    measuring,
    run_one,
    serialize_pb,
)

from modelport.errors import FormatError
from modelport.formats.caffe.blobproto import read_binaryproto
from modelport.formats.caffe.caffemodel import read_caffemodel
from modelport.train.snapshot import read_solverstate

# Crashers whose fix belongs to another open item; they run, and must start passing by then.
KNOWN_OPEN: dict[str, str] = {}


def _corpus() -> list[tuple[str, str]]:
    cases = []
    for target in sorted(TARGETS):
        folder = CORPUS / target
        if folder.is_dir():
            cases += [(target, p.name) for p in sorted(folder.iterdir()) if p.is_file()]
    return cases


def _params() -> list[object]:
    out: list[object] = []
    for target, name in _corpus():
        reason = KNOWN_OPEN.get(f"{target}/{name}")
        marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
        out.append(pytest.param(target, name, marks=marks, id=f"{target}/{name}"))
    return out


def test_corpus_is_not_empty() -> None:
    assert len(_corpus()) >= 5


@pytest.mark.parametrize(("target", "name"), _params())
def test_crasher_replays_cleanly(target: str, name: str, tmp_path) -> None:
    data = (CORPUS / target / name).read_bytes()
    with measuring():
        outcome = run_one(TARGETS[target], data, tmp_path)
    assert outcome.kind != "crash", outcome.detail
    assert outcome.memory_ok, f"peak heap {outcome.peak} bytes for a {outcome.size}-byte input"


def _blob(n_axes: int) -> bytes:
    return serialize_pb([PbField(7, LEN, [PbField(1, VARINT, 1)] * n_axes),
                         PbField(5, LEN, struct.pack("<f", 1.0))])


@pytest.mark.parametrize("n_axes", [33, 65])
def test_blob_with_more_than_32_axes_is_refused(tmp_path, n_axes: int) -> None:
    """Caffe's Blob::Reshape: CHECK_LE(shape.size(), kMaxBlobAxes = 32). numpy stops at 64
    dims with a raw ValueError."""
    mean = tmp_path / "m.binaryproto"
    mean.write_bytes(_blob(n_axes))
    with pytest.raises(FormatError, match=rf"m\.binaryproto.*{n_axes} axes.*at most 32"):
        read_binaryproto(mean)
    model = tmp_path / "w.caffemodel"
    model.write_bytes(serialize_pb([PbField(100, LEN, [PbField(1, LEN, b"ip"),
                                                       PbField(7, LEN, _blob(n_axes))])]))
    with pytest.raises(FormatError, match=r"w\.caffemodel.*layer 'ip'.*at most 32"):
        read_caffemodel(str(model))


def test_blob_with_32_axes_is_read(tmp_path) -> None:
    mean = tmp_path / "m.binaryproto"
    mean.write_bytes(_blob(32))
    assert read_binaryproto(mean).shape == (1,) * 32


def test_solverstate_learned_net_not_utf8(tmp_path) -> None:
    """SolverState.learned_net is a proto2 `string`: bytes that are not UTF-8 mean the file
    is corrupt (it was a raw UnicodeDecodeError)."""
    state = tmp_path / "s.solverstate"
    state.write_bytes(serialize_pb([PbField(1, VARINT, 5),
                                    PbField(2, LEN, b"net_iter_5.caffe\xffmodel")]))
    with pytest.raises(FormatError, match=r"s\.solverstate.*learned_net.*Fix:"):
        read_solverstate(state)


@pytest.mark.parametrize("dims", [[0, 2**62, 2**62], [0, 2**40, 2**40], [2**31], [3, 2**30]])
def test_blob_shape_over_int_max_is_refused(tmp_path, dims: list[int]) -> None:
    """Caffe's Blob::Reshape: "blob size exceeds INT_MAX" (dims and count are C++ ints). An
    empty blob with huge other dims was a raw numpy ValueError ("array is too big",
    "Maximum allowed dimension exceeded")."""
    mean = tmp_path / "m.binaryproto"
    mean.write_bytes(serialize_pb([PbField(7, LEN, [PbField(1, VARINT, d) for d in dims])]))
    with pytest.raises(FormatError, match=r"m\.binaryproto.*2\^31-1"):
        read_binaryproto(mean)


def test_legacy_dims_are_int32(tmp_path) -> None:
    """BlobProto's legacy num/channels/height/width are int32: protobuf keeps a varint's low 32
    bits, so -2 (a 10-byte varint) is negative, and 2^32 + 1 is 1."""
    mean = tmp_path / "m.binaryproto"
    mean.write_bytes(serialize_pb([PbField(1, VARINT, 1), PbField(2, VARINT, 2**64 - 2)]))
    with pytest.raises(FormatError, match="negative dimension"):
        read_binaryproto(mean)
    mean.write_bytes(serialize_pb([PbField(1, VARINT, 1), PbField(2, VARINT, 1),
                                   PbField(3, VARINT, 2**32 + 1), PbField(4, VARINT, 2),
                                   PbField(5, LEN, struct.pack("<2f", 1.0, 2.0))]))
    assert read_binaryproto(mean).shape == (1, 1, 1, 2)


@pytest.mark.parametrize("quote", ['"', "'"])
@pytest.mark.parametrize("closed", [True, False])
def test_long_string_literal_memory(tmp_path, quote: str, closed: bool) -> None:
    """A 200 KB string literal on one line: the pre-parse limit scan's regex
    `"(?:[^"\\\n]|\\.)*"` kept ~140 bytes of backtracking state per character (28 MB here);
    the whole read must stay within the fuzz memory bound (16 x the input + 2 MB)."""
    text = f"name: {quote}{'a' * 200_000}{quote if closed else ''}\nlayer {{ name: 'x' }}\n"
    with measuring():
        outcome = run_one(TARGETS["prototxt"], text.encode(), tmp_path)
    assert outcome.kind != "crash", outcome.detail
    assert outcome.memory_ok, f"peak heap {outcome.peak} bytes for a {outcome.size}-byte input"


def test_unpacked_run_probe_is_linear(monkeypatch) -> None:
    """Found by `make fuzz` (a 252 KB binaryproto alternating unpacked `data` values with
    another field took 4.7 s): wire._run_length compared up to 65536 records with numpy to find
    a run of length 1, so each field cost ~the rest of the file (O(fields x 64K)). The probe
    must grow with the run: the records examined stay proportional to the input."""
    from modelport.formats.caffe import wire
    from modelport.formats.caffe.blobproto import decode_blob

    examined = []
    real = wire.np.frombuffer

    def counting(buf, dtype=float, count=-1, offset=0):  # type: ignore[no-untyped-def]
        examined.append(count)
        return real(buf, dtype=dtype, count=count, offset=offset)

    monkeypatch.setattr(wire.np, "frombuffer", counting)
    pairs = 4096
    data = (b"\x2d" + struct.pack("<f", 1.0) + b"\x08\x01") * pairs  # data value, num: 1
    with pytest.raises(FormatError):
        decode_blob(data, 0, len(data), "m.binaryproto")
    assert sum(c for c in examined if c > 0) <= 64 * len(data), sum(examined)
