"""Structure-aware mutation fuzzing of modelport's file readers (shared by tests and tools/fuzz.py).

The property every reader must keep, for ANY input bytes: it returns, or raises a
`ModelportError` whose message is one line; it never raises anything else (IndexError,
UnicodeDecodeError, RecursionError, numpy's ValueError ...), never takes more than 5 s, and its
peak Python heap (tracemalloc: Python objects and numpy arrays) stays within a small multiple
of the input size.

Inputs are made from real files (tests/golden, ../shared/golden) by mutations that know the
formats: protobuf messages are parsed into a field tree whose nodes are dropped, duplicated,
re-typed, nested, spliced between files or given lying lengths and huge varints; prototxt is
tokenised and mutated token by token (huge numbers, other field names, hostile strings, deep
nesting). Plain byte flips, inserts, deletes, truncations and splices are applied on top.
Everything is driven by one `random.Random`, so a seed reproduces an input exactly.
"""

from __future__ import annotations

import os
import pathlib
import random
import re
import struct
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import ModelportError
from modelport.formats.varint import VarintError, decode_varint

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN_DIRS = (ROOT / "tests" / "golden", ROOT.parent / "shared" / "golden")
CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"

TIME_LIMIT_S = 5.0
# Peak heap allowed for one input: MEMORY_RATIO x its size plus a fixed allowance for the
# reader's own small objects (a parsed NetParameter of a tiny prototxt is still ~100 KB).
MEMORY_RATIO = 16
MEMORY_SLACK = 2 << 20
MAX_INPUT = 256 << 10
TEXT_MAX_INPUT = 96 << 10  # above the largest golden prototxt (open_nsfw, 60 KB)


# ---------------------------------------------------------------------------------------------
# protobuf wire format: a lossless field tree

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


@dataclass
class PbField:
    """One field: `value` is an int (varint), bytes (fixed / unparsed LEN) or sub-fields."""

    number: int
    wire: int
    value: int | bytes | list[PbField]
    lie: int | None = None  # a declared length that differs from the payload (LEN only)
    pad: int = 0  # extra continuation bytes in the varint (non-canonical encoding)


def _varint(value: int, pad: int = 0) -> bytes:
    value &= (1 << 64) - 1 if value < 0 else (1 << 70) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value or pad:
            out.append(byte | 0x80)
            if not value:
                break
        else:
            out.append(byte)
            return bytes(out)
    for _ in range(pad - 1):
        out.append(0x80)
    out.append(0)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    try:  # up to 10 bytes, as protobuf writes them
        return decode_varint(buf, pos, len(buf), 10)
    except VarintError:
        return None


def parse_pb(buf: bytes, depth: int = 0, max_depth: int = 5) -> list[PbField] | None:
    """Parse `buf` as a message (recursing into LEN payloads that parse); None if it does not."""
    out: list[PbField] = []
    pos = 0
    while pos < len(buf):
        key = _read_varint(buf, pos)
        if key is None:
            return None
        k, pos = key
        number, wire = k >> 3, k & 7
        if number == 0:
            return None
        if wire == VARINT:
            v = _read_varint(buf, pos)
            if v is None:
                return None
            out.append(PbField(number, wire, v[0]))
            pos = v[1]
        elif wire in (FIXED32, FIXED64):
            n = 4 if wire == FIXED32 else 8
            if pos + n > len(buf):
                return None
            out.append(PbField(number, wire, buf[pos:pos + n]))
            pos += n
        elif wire == LEN:
            ln = _read_varint(buf, pos)
            if ln is None or ln[1] + ln[0] > len(buf):
                return None
            payload = buf[ln[1]:ln[1] + ln[0]]
            pos = ln[1] + ln[0]
            sub = parse_pb(payload, depth + 1, max_depth) if depth < max_depth and payload \
                else None
            out.append(PbField(number, wire, sub if sub else payload))
        else:
            return None
    return out


def serialize_pb(fields: Sequence[PbField]) -> bytes:
    out = bytearray()
    for f in fields:
        out += _varint((f.number << 3) | f.wire)
        if f.wire == VARINT:
            assert isinstance(f.value, int)
            out += _varint(f.value, f.pad)
        elif f.wire == LEN:
            payload = f.value if isinstance(f.value, bytes) else serialize_pb(
                f.value if isinstance(f.value, list) else [])
            out += _varint(len(payload) if f.lie is None else f.lie, f.pad)
            out += payload
        else:
            out += f.value if isinstance(f.value, bytes) else b"\0" * (
                4 if f.wire == FIXED32 else 8)
    return bytes(out)


def _nodes(fields: list[PbField]) -> Iterator[tuple[list[PbField], int]]:
    for i, f in enumerate(fields):
        yield fields, i
        if isinstance(f.value, list):
            yield from _nodes(f.value)


INTERESTING_INTS = (0, 1, 2, 3, 4, 7, 8, 127, 128, 255, 256, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31,
                    2**32 - 1, 2**32, 2**53, 2**62, 2**63 - 1, 2**63, 2**64 - 1, -1, -2, -(2**31),
                    -(2**63), 1 << 40, 1000000007)
# Field numbers the readers interpret (NetParameter, LayerParameter, V1/V0 layers, BlobProto,
# BlobShape, SolverState) plus a few they must skip.
KNOWN_NUMBERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 50, 100, 3, 17, 999, 536870911)


def _interesting_int(rng: random.Random) -> int:
    if rng.random() < 0.7:
        return rng.choice(INTERESTING_INTS) & ((1 << 64) - 1)
    return rng.getrandbits(rng.choice((7, 14, 21, 32, 64)))


def _random_payload(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    n = rng.choice((0, 1, 2, 3, 4, 5, 7, 8, 12, 16, 64, 1000))
    if kind == 0:
        return rng.randbytes(n)
    if kind == 1:  # float32 data
        return struct.pack(f"<{n}f", *(rng.uniform(-1e3, 1e3) for _ in range(n)))
    if kind == 2:  # invalid / odd UTF-8
        return rng.choice((b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"a\0b", "ü".encode(),
                           b"conv1", b"\x80" * 3))
    if kind == 3:  # a BlobShape with interesting dims
        return serialize_pb([PbField(1, VARINT, _interesting_int(rng))
                             for _ in range(rng.randrange(1, 6))])
    if kind == 4:  # packed varints
        return b"".join(_varint(_interesting_int(rng)) for _ in range(rng.randrange(1, 6)))
    return b""


def _random_field(rng: random.Random) -> PbField:
    number = rng.choice(KNOWN_NUMBERS)
    wire = rng.choice((VARINT, LEN, LEN, FIXED32, FIXED64))
    if wire == VARINT:
        return PbField(number, wire, _interesting_int(rng))
    if wire == LEN:
        return PbField(number, wire, _random_payload(rng))
    return PbField(number, wire, rng.randbytes(4 if wire == FIXED32 else 8))


def mutate_pb_tree(fields: list[PbField], rng: random.Random,
                   donors: Sequence[list[PbField]]) -> None:
    """Apply one structural mutation to `fields` in place."""
    nodes = list(_nodes(fields))
    if not nodes:
        fields.append(_random_field(rng))
        return
    parent, i = rng.choice(nodes)
    f = parent[i]
    op = rng.randrange(14)
    if op == 0:
        del parent[i]
    elif op == 1:
        parent.insert(rng.randrange(len(parent) + 1), _copy(f))
    elif op == 2:  # interesting varint value
        if f.wire == VARINT:
            f.value = _interesting_int(rng)
        else:
            parent.insert(i, PbField(f.number, VARINT, _interesting_int(rng)))
    elif op == 3:  # change the wire type, keeping the number
        f.wire = rng.choice((VARINT, FIXED64, LEN, FIXED32))
        f.value = (_interesting_int(rng) if f.wire == VARINT else _random_payload(rng)
                   if f.wire == LEN else rng.randbytes(4 if f.wire == FIXED32 else 8))
    elif op == 4:
        f.number = rng.choice(KNOWN_NUMBERS)
    elif op == 5:  # lying length (huge, or off by a little)
        if f.wire == LEN:
            f.lie = rng.choice((2**31, 2**32 + 3, 2**62, 2**64 - 1, 0, 1)) if rng.random() < 0.5 \
                else max(0, len(serialize_pb([f])) + rng.randint(-8, 8))
    elif op == 6:  # nest the field inside itself, possibly very deeply
        payload = serialize_pb([f])
        # each level copies the payload: keep depth x size bounded (the mutator's own memory)
        depth = min(rng.choice((1, 2, 3, 10, 100, 1000, 5000)), max(1, (4 << 20) // max(
            1, len(payload))))
        key = _varint((f.number << 3) | LEN)
        for _ in range(depth - 1):  # built flat: a 5000-deep tree would hit our own recursion
            payload = key + _varint(len(payload)) + payload
        parent[i] = PbField(f.number, LEN, payload)
    elif op == 7:
        parent.insert(rng.randrange(len(parent) + 1), _random_field(rng))
    elif op == 8 and len(parent) > 1:
        j = rng.randrange(len(parent))
        parent[i], parent[j] = parent[j], parent[i]
    elif op == 9 and donors:  # splice a subtree from another file
        donor_nodes = list(_nodes(rng.choice(donors)))
        if donor_nodes:
            dp, di = rng.choice(donor_nodes)
            parent.insert(rng.randrange(len(parent) + 1), _copy(dp[di]))
    elif op == 10 and isinstance(f.value, list):  # unparse: corrupt the payload bytes
        raw = bytearray(serialize_pb(f.value))
        if raw:
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        f.value = bytes(raw)
    elif op == 11:  # non-canonical varint encodings
        f.pad = rng.choice((1, 2, 5, 9))
    elif op == 12 and isinstance(f.value, bytes) and f.wire == LEN:
        # truncate or extend a packed payload (e.g. float data not a multiple of 4)
        f.value = f.value[: rng.randrange(len(f.value) + 1)] if rng.random() < 0.5 \
            else f.value + rng.randbytes(rng.randrange(1, 9))
    elif op == 13:  # many copies (repeated dims, many blobs), up to ~MAX_INPUT bytes
        size = len(serialize_pb([f])) if isinstance(f.value, list) else 16
        for _ in range(min(rng.choice((2, 10, 100)), max(1, MAX_INPUT // max(1, size)))):
            parent.insert(i, _copy(f))


def _copy(f: PbField) -> PbField:
    value = [_copy(c) for c in f.value] if isinstance(f.value, list) else f.value
    return PbField(f.number, f.wire, value, f.lie, f.pad)


# ---------------------------------------------------------------------------------------------
# byte-level mutations

_MAGIC = (b"\xff" * 10, b"\x80" * 11, b"\xff\xff\xff\xff\x0f", b"\x00", b"\x0a\xff\xff\xff\xff\x07",
          b"\xa2\x06\xff\xff\xff\xff\x0f", b"\x3a\x0a\x08\xff\xff\xff\xff\x0f", b"\x7f",
          b"{", b"}", b"\"", b"\\", b"\n", b"#", b"\xef\xbb\xbf", b"\xc3(")


def mutate_bytes(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """One generic byte-level mutation."""
    buf = bytearray(data)
    op = rng.randrange(9)
    n = len(buf)
    if op == 0 and n:
        buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif op == 1 and n:
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(n)] = rng.randrange(256)
    elif op == 2:
        pos = rng.randrange(n + 1)
        buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
    elif op == 3 and n:
        a = rng.randrange(n)
        del buf[a:a + rng.randint(1, max(1, min(64, n - a)))]
    elif op == 4 and n:
        del buf[rng.randrange(n):]
    elif op == 5 and donors:  # splice: head of one file, tail of another
        other = rng.choice(donors)
        buf = buf[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1):]
    elif op == 6:
        pos = rng.randrange(n + 1)
        buf[pos:pos] = rng.choice(_MAGIC)
    elif op == 7 and n:  # duplicate a range
        a = rng.randrange(n)
        chunk = buf[a:a + rng.randint(1, 256)]
        pos = rng.randrange(n + 1)
        buf[pos:pos] = chunk * rng.choice((1, 2, 8))
    elif op == 8 and n >= 4:  # overwrite 4 bytes with an interesting little-endian int
        a = rng.randrange(n - 3)
        buf[a:a + 4] = struct.pack("<I", rng.choice((0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000)))
    return bytes(buf)


_PARSED: dict[bytes, list[PbField] | None] = {}


def _parsed(data: bytes) -> list[PbField] | None:
    """parse_pb, memoised for the seed files (never mutate the result: copy it)."""
    if data not in _PARSED:
        if len(_PARSED) > 512:
            _PARSED.clear()
        _PARSED[data] = parse_pb(data)
    return _PARSED[data]


def mutate_protobuf(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """1-4 structural mutations (when `data` parses) and, sometimes, byte mutations on top."""
    cached = _parsed(data)
    tree = [_copy(f) for f in cached] if cached is not None else None
    out = data
    if tree is not None and rng.random() < 0.85:
        donor_trees = [t for t in (_parsed(d) for d in rng.sample(list(donors), min(2, len(
            donors)))) if t]
        for _ in range(rng.randint(1, 4)):
            mutate_pb_tree(tree, rng, donor_trees)
        out = serialize_pb(tree)
        if rng.random() < 0.3:
            out = mutate_bytes(out, rng, donors)
    else:
        for _ in range(rng.randint(1, 4)):
            out = mutate_bytes(out, rng, donors)
    return out[:MAX_INPUT]


# ---------------------------------------------------------------------------------------------
# prototxt: token-level mutations

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*|[A-Za-z_][\w.]*'
                    r'|[-+]?(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)[fF]?'
                    r'|\s+|.', re.S)
HUGE_NUMBERS = ("0", "-0", "-1", "1.5", "2147483647", "2147483648", "-2147483649", "4294967296",
                "9223372036854775807", "9223372036854775808", "-9223372036854775809",
                "18446744073709551616", "99999999999999999999999999999999", "1e400", "-1e400",
                "1e-400", "nan", "-inf", "inf", "0x7fffffff", "0xffffffffffffffff", "2000000000",
                "4611686018427387904", "1e38", "3.4e39", "00", "1f", "-")
HOSTILE_STRINGS = ('""', '"\\""', '"o\\"\\"\\"\\nimport os"', '"\\x00"', '"\\\\"', '"../x"',
                   '"\\377"', '"\\u00fc"', '"\\U0010ffff"', '"' + "a" * 5000 + '"', '"\\"',
                   "'single'", '"\\z"', '"\\1234"', '"\xfc"')


_MAX_TOKENS = 60_000  # ~ a 96 KB prototxt; bounds the mutator's own memory


def _field_names() -> list[str]:
    from modelport.formats.caffe import caffe_pb2

    names: set[str] = set()
    todo = [caffe_pb2.NetParameter.DESCRIPTOR, caffe_pb2.SolverParameter.DESCRIPTOR]
    seen = set()
    while todo:
        d = todo.pop()
        if d.full_name in seen:
            continue
        seen.add(d.full_name)
        for f in d.fields:
            names.add(f.name)
            if f.message_type is not None:
                todo.append(f.message_type)
            if f.enum_type is not None:
                names.update(v.name for v in f.enum_type.values)
    return sorted(names)


_NAMES: list[str] = []


def field_names() -> list[str]:
    if not _NAMES:
        _NAMES.extend(_field_names())
    return _NAMES


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _is_number(tok: str) -> bool:
    return bool(tok) and (tok[0].isdigit() or (tok[0] in "+-." and len(tok) > 1))


def mutate_prototxt_tokens(toks: list[str], rng: random.Random,
                           donors: Sequence[list[str]]) -> None:
    """One token-level mutation in place (whitespace tokens are kept so output stays readable)."""
    idx = [i for i, t in enumerate(toks) if not t.isspace()] or [0]
    if not toks:
        toks.append("")
    if len(toks) > _MAX_TOKENS:  # the result is cut to max_len anyway: keep the list small
        del toks[_MAX_TOKENS:]
        idx = [j for j in idx if j < _MAX_TOKENS] or [0]
    i = rng.choice(idx)
    op = rng.randrange(13)
    if op == 0:  # numbers -> huge / odd numbers
        nums = [j for j in idx if _is_number(toks[j])]
        toks[rng.choice(nums) if nums else i] = rng.choice(HUGE_NUMBERS)
    elif op == 1:  # identifiers -> another field or enum name
        ids = [j for j in idx if toks[j][:1].isalpha()]
        toks[rng.choice(ids) if ids else i] = rng.choice(field_names())
    elif op == 2:  # strings -> hostile strings
        strs = [j for j in idx if toks[j][:1] in "\"'"]
        toks[rng.choice(strs) if strs else i] = rng.choice(HOSTILE_STRINGS)
    elif op == 3:
        del toks[i:i + rng.randint(1, 4)]
    elif op == 4:
        toks[i:i] = toks[i:i + rng.randint(1, 20)]
    elif op == 5:
        j = rng.choice(idx)
        toks[i], toks[j] = toks[j], toks[i]
    elif op == 6:  # deep nesting of an unknown or a real message field
        depth = rng.choice((10, 50, 99, 101, 200, 500, 1000, 3000))
        name = rng.choice(("layer", "foo", "convolution_param", "include", "input_param",
                           "weight_filler", "shape"))
        toks[i:i] = [f" {name} {{"] * depth + [" dim: 1 "] + [" }"] * depth
    elif op == 7:  # unbalanced braces / separators
        toks.insert(i, rng.choice(("{", "}", ":", ";", ",", "<", ">", "[", "]", "{{", "\0")))
    elif op == 8:  # a random known field with an odd value
        toks[i:i] = [" ", rng.choice(field_names()), rng.choice((": ", " ", ":")),
                     rng.choice(HUGE_NUMBERS + HOSTILE_STRINGS + ("{ }", "TRAIN", "true"))]
    elif op == 9 and donors:  # splice a token range from another file
        d = rng.choice(donors)
        if d:
            a = rng.randrange(len(d))
            toks[i:i] = d[a:a + rng.randint(1, 200)]
    elif op == 10:  # repeat a whole block many times
        opens = [j for j in idx if toks[j] == "{"]
        if opens:
            a = rng.choice(opens)
            depth, b = 0, a
            while b < len(toks):
                depth += toks[b] == "{"
                depth -= toks[b] == "}"
                b += 1
                if depth == 0:
                    break
            start = max(0, a - 2)
            times = min(rng.choice((2, 10, 200)), max(1, _MAX_TOKENS // max(1, b - start)))
            toks[b:b] = toks[start:b] * times
    elif op == 11:  # comments and line structure
        toks.insert(i, rng.choice(("# comment\n", "#", "\n", "\r", "\t", "\v", "\f")))
    elif op == 12:  # list syntax and repeated-field shortcuts
        toks.insert(i, rng.choice(("dim: [1, 2, 3]", "dim: []", "top: [\"a\"]", "[", "]")))


def mutate_prototxt(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    text = data.decode("utf-8", "replace")
    toks = tokens(text)
    donor_toks = [tokens(d.decode("utf-8", "replace")) for d in rng.sample(list(donors), min(
        2, len(donors)))]
    for _ in range(rng.randint(1, 4)):
        mutate_prototxt_tokens(toks, rng, donor_toks)
    out = "".join(toks).encode("utf-8")
    if rng.random() < 0.15:
        out = mutate_bytes(out, rng, donors)
    return out[:MAX_INPUT]


# ---------------------------------------------------------------------------------------------
# targets

def _golden_files(pattern: str) -> list[pathlib.Path]:
    found: dict[str, pathlib.Path] = {}
    for base in GOLDEN_DIRS:
        if base.is_dir():
            for p in sorted(base.rglob(pattern)):
                if p.stat().st_size <= MAX_INPUT:
                    found.setdefault(str(p.relative_to(base)), p)
    return [found[k] for k in sorted(found)]


def _read(paths: Sequence[pathlib.Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def _is_v1(data: bytes) -> bool:
    tree = parse_pb(data, max_depth=0) or []
    return any(f.number == 2 and f.wire == LEN for f in tree)


def v2_to_v1(data: bytes) -> bytes:
    """Rewrite a V2 caffemodel (`layer`, field 100) as V1 (`layers`, field 2): name -> 4,
    type string -> the V1 enum (5), blobs -> 6. Gives V1 seeds besides the one golden V1 file."""
    from modelport.formats.caffe.upgrade import V1_TYPE_NAMES

    by_name = {v: k for k, v in V1_TYPE_NAMES.items()}
    tree = parse_pb(data, max_depth=1) or []
    out: list[PbField] = []
    for f in tree:
        if f.number != 100 or not isinstance(f.value, list):
            continue
        layer: list[PbField] = []
        for sub in f.value:
            payload = sub.value if isinstance(sub.value, bytes) else serialize_pb(
                sub.value if isinstance(sub.value, list) else [])
            if sub.number == 1:
                layer.append(PbField(4, LEN, payload))
            elif sub.number == 2:
                layer.append(PbField(5, VARINT, by_name.get(payload.decode("utf-8", "replace"),
                                                             4)))
            elif sub.number == 7:
                layer.append(PbField(6, LEN, payload))
        out.append(PbField(2, LEN, layer))
    return serialize_pb(out)


def _blob_seeds(models: Sequence[bytes]) -> list[bytes]:
    """BlobProto messages cut out of caffemodels (more binaryproto seeds)."""
    out = set()
    for data in models:
        for f in parse_pb(data, max_depth=1) or []:
            if f.number in (100, 2) and isinstance(f.value, list):
                for sub in f.value:
                    if (f.number, sub.number) in ((100, 7), (2, 6)):
                        out.add(sub.value if isinstance(sub.value, bytes)
                                else serialize_pb(sub.value))  # type: ignore[arg-type]
    return sorted(out, key=lambda b: (len(b), b))[:40]


def _run_caffemodel(path: str, data: bytes) -> None:
    from modelport.formats.caffe.caffemodel import read_caffemodel

    read_caffemodel(path)


def _run_prototxt(path: str, data: bytes) -> None:
    from modelport.formats.caffe.inputs import declared_input_shapes
    from modelport.pipeline import read_net

    net = read_net(path, phase="train" if len(data) % 2 else "test")
    declared_input_shapes(net)


def _run_binaryproto(path: str, data: bytes) -> None:
    from modelport.formats.caffe.blobproto import read_mean

    read_mean(path)


def _run_solver(path: str, data: bytes) -> None:
    from modelport.formats.caffe.prototxt import read_solver_text
    from modelport.train.solver import check_solver, solver_type

    param = read_solver_text(path)
    check_solver(param, solver_type(param))


def _run_solverstate(path: str, data: bytes) -> None:
    from modelport.train.snapshot import read_solverstate

    read_solverstate(path)


@dataclass
class Target:
    """A reader under test: how to run it on a file and how to mutate its inputs."""

    name: str
    suffix: str
    run: Callable[[str, bytes], None]
    mutate: Callable[[bytes, random.Random, Sequence[bytes]], bytes]
    seed_loader: Callable[[], list[bytes]]
    # Text is parsed by pure Python (~20 us per token), so its inputs are kept smaller.
    max_len: int = MAX_INPUT
    _seeds: list[bytes] = field(default_factory=list)
    _warm: bool = False

    def warm(self, workdir: str) -> None:
        """Run once on a missing file so the reader's imports (torch, for the solver) are not
        charged to the first input's memory."""
        if not self._warm:
            self._warm = True
            try:
                self.run(os.path.join(workdir, "missing" + self.suffix), b"")
            except ModelportError:
                pass

    @property
    def seeds(self) -> list[bytes]:
        if not self._seeds:
            self._seeds.extend(self.seed_loader())
            if not self._seeds:
                self._seeds.append(b"")
        return self._seeds

    def generate(self, rng: random.Random) -> bytes:
        """One input: a mutated seed (occasionally a seed as is, or plain random bytes)."""
        r = rng.random()
        if r < 0.02:
            return rng.choice(self.seeds)
        if r < 0.04:
            return rng.randbytes(rng.randrange(64))
        return self.mutate(rng.choice(self.seeds), rng, self.seeds)[:self.max_len]


def _v2_models() -> list[bytes]:
    return [d for d in _read(_golden_files("*.caffemodel")) if not _is_v1(d)]


def _v1_models() -> list[bytes]:
    real = [d for d in _read(_golden_files("*.caffemodel")) if _is_v1(d)]
    return real + [v2_to_v1(d) for d in _v2_models()[:12]]


def _nets() -> list[bytes]:
    paths = [p for p in _golden_files("*.prototxt") if "solver" not in p.name]
    return _read(paths)


def _solvers() -> list[bytes]:
    return _read(_golden_files("solver*.prototxt"))


TARGETS: dict[str, Target] = {
    t.name: t for t in (
        Target("caffemodel_v2", ".caffemodel", _run_caffemodel, mutate_protobuf, _v2_models),
        Target("caffemodel_v1", ".caffemodel", _run_caffemodel, mutate_protobuf, _v1_models),
        Target("prototxt", ".prototxt", _run_prototxt, mutate_prototxt, _nets, TEXT_MAX_INPUT),
        Target("binaryproto", ".binaryproto", _run_binaryproto, mutate_protobuf,
               lambda: _read(_golden_files("*.binaryproto")) + _blob_seeds(_v2_models())),
        Target("solver", ".prototxt", _run_solver, mutate_prototxt, _solvers, TEXT_MAX_INPUT),
        Target("solverstate", ".solverstate", _run_solverstate, mutate_protobuf,
               lambda: _read(_golden_files("*.solverstate"))),
    )
}


def _tf(name: str) -> Callable[..., Any]:
    """fuzz_tf.<name>, imported at the first call (fuzz_tf imports this module)."""
    def call(*args: Any) -> Any:
        import fuzz_tf

        return getattr(fuzz_tf, name)(*args)
    return call


# The TensorFlow / Keras readers (fuzz_tf.py says what each input is and how it is mutated).
TARGETS.update({t.name: t for t in (
    Target("tf_checkpoint", ".tfck", _tf("run_checkpoint"), _tf("mutate_checkpoint"),
           _tf("checkpoint_seeds")),
    Target("keras_h5", ".h5", _tf("run_weights"), _tf("mutate_h5"), _tf("h5_seeds")),
    Target("keras_archive", ".keras", _tf("run_weights"), _tf("mutate_keras"),
           _tf("keras_seeds")),
    Target("tf_object_graph", ".pb", _tf("run_object_graph"), _tf("mutate_object_graph"),
           _tf("object_graph_seeds")),
)})


# ---------------------------------------------------------------------------------------------
# running one input

@dataclass
class Outcome:
    """What one input did: 'ok', 'error' (a ModelportError) or 'crash' (anything else)."""

    kind: str
    seconds: float
    peak: int
    size: int
    detail: str = ""

    @property
    def memory_ok(self) -> bool:
        return self.peak <= MEMORY_RATIO * self.size + MEMORY_SLACK

    @property
    def bad(self) -> bool:
        return self.kind == "crash" or not self.memory_ok or self.seconds > TIME_LIMIT_S


def run_one(target: Target, data: bytes, workdir: str | os.PathLike[str]) -> Outcome:
    """Write `data` to a file, run the reader on it, classify the result.

    tracemalloc must be running (see `measuring`); its peak is reset for this input.
    A ModelportError with an empty message counts as a crash (a multi-line one does not: the
    CLI joins its lines).
    """
    target.warm(os.fspath(workdir))
    path = os.path.join(os.fspath(workdir), "input" + target.suffix)
    with open(path, "wb") as fh:
        fh.write(data)
    tracing = tracemalloc.is_tracing()
    if tracing:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
    kind, detail = "ok", ""
    start = time.perf_counter()
    try:
        target.run(path, data)
    except ModelportError as exc:
        kind = "error"
        if not str(exc).strip():
            kind, detail = "crash", f"{type(exc).__name__} with an empty message"
    except (Exception, RecursionError) as exc:  # noqa: BLE001 - classifying is the point
        where = traceback.extract_tb(exc.__traceback__)[-1]
        kind, detail = "crash", (f"{type(exc).__name__}: {str(exc)[:300]} (at "
                                 f"{os.path.basename(where.filename)}:{where.name})")
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] - base if tracing else 0
    return Outcome(kind, seconds, max(0, peak), len(data), detail)


class measuring:
    """Context manager: tracemalloc on for the block (restoring the previous state)."""

    def __enter__(self) -> measuring:
        self._was = tracemalloc.is_tracing()
        if not self._was:
            tracemalloc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._was:
            tracemalloc.stop()


# Crashes whose fix is another open item: still counted as crashes by tools/fuzz.py, tolerated
# by the in-suite test until that item lands (then delete the entry).
KNOWN_OPEN: dict[str, tuple[tuple[str, str], ...]] = {}


def known_open(target: str, outcome: Outcome) -> str | None:
    """The open item that owns this crash, if it is a known one."""
    for prefix, item in KNOWN_OPEN.get(target, ()):
        if outcome.kind == "crash" and outcome.detail.startswith(prefix):
            return item
    return None


def crash_signature(outcome: Outcome) -> str:
    """A short key grouping crashes by exception type and message shape."""
    return re.sub(r"\d+", "N", outcome.detail)[:120]
