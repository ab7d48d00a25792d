"""Fuzz targets for the TensorFlow / Keras readers (src/modelport/formats/tf), registered in
fuzz_support.TARGETS.

- `tf_checkpoint`: one input holds a whole tensor bundle (`pack_checkpoint`: a flags byte, the
  shard count, the part lengths, then the `.index` and each `.data-NNNNN-of-MMMMM` shard); the
  run writes the parts next to each other and reads them (flags: crc32c checks on or off, and
  read_checkpoint / checkpoint_entries / open_weights / read_checkpoint_source). The mutator
  mutates one part: the index's records (their BundleEntryProto / BundleHeaderProto fields,
  keys, order) re-written as a table with valid block checksums, so mutations get past the
  SSTable layer; or a shard's bytes; or the raw bytes of the whole input.
- `keras_h5`: a Keras `.h5` / `.weights.h5` file read by `open_weights` (h5py parses it);
  byte mutations plus little-endian integer fields overwritten with addresses and sizes.
- `keras_archive`: a `.keras` zip read by `open_weights`; the mutator unzips it, mutates
  `config.json` as JSON (values, class names, deep nesting) or `model.weights.h5` as above, or
  the member list, and zips it again (valid CRCs), or mutates the zip's bytes.
- `tf_object_graph`: a serialized TrackableObjectGraph given to read_object_graph_source with
  the variables of every fixture checkpoint; protobuf-tree mutations plus graph-shaped ones
  (long chains, cycles, dangling node ids).

Seeds: the checkpoints and Keras files under tests/fixtures/{tf,keras,tf_port}.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pathlib
import random
import struct
import warnings
import zipfile
from collections.abc import Sequence
from typing import Any

import fuzz_support as fs
import numpy as np

# Imported here, before any input is measured (Target.warm imports this module): a reader's
# first lazy import (ml_dtypes for bfloat16, h5py, the object graph's schema) would be charged
# to the input that first needs it (~6 MB for ml_dtypes).
for _module in ("ml_dtypes", "h5py", "google_crc32c", "modelport.formats.tf.open",
                "modelport.schema.tf.trackable_object_graph_pb2"):
    try:
        importlib.import_module(_module)
    except ImportError:  # an extra not installed: the reader says so, as a ModelportError
        pass

FIXTURES = [fs.ROOT / "tests" / "fixtures" / d for d in ("tf", "keras", "tf_port")]
MAX_SHARDS = 4
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def _fixture_files(pattern: str) -> list[pathlib.Path]:
    return [p for base in FIXTURES if base.is_dir() for p in sorted(base.rglob(pattern))
            if p.is_file() and p.stat().st_size <= fs.MAX_INPUT]


# ---------------------------------------------------------------------------------------------
# tf_checkpoint: the container

def pack_checkpoint(flags: int, index: bytes, shards: Sequence[bytes]) -> bytes:
    """flags, shard count - 1, u32 lengths of the index and every shard but the last, parts."""
    shards = list(shards)[:MAX_SHARDS] or [b""]
    parts = [index, *shards]
    head = bytes([flags & 0xFF, len(shards) - 1])
    head += b"".join(struct.pack("<I", len(p)) for p in parts[:-1])
    return head + b"".join(parts)


def unpack_checkpoint(data: bytes) -> tuple[int, bytes, list[bytes]]:
    """(flags, index, shards) of any bytes: short or lying lengths take what is left."""
    if len(data) < 2:
        return 0, data, [b""]
    flags, count = data[0], data[1] % MAX_SHARDS + 1
    pos = 2
    lengths = []
    for _ in range(count):
        n = struct.unpack_from("<I", data, pos)[0] if pos + 4 <= len(data) else 0
        lengths.append(n)
        pos = min(pos + 4, len(data))
    parts = []
    for n in lengths:
        parts.append(data[pos:pos + n])
        pos = min(pos + n, len(data))
    parts.append(data[pos:])
    return flags, parts[0], parts[1:]


def run_checkpoint(path: str, data: bytes) -> None:
    """Write the bundle as `<dir>/ckpt/model.*` and read it the way the flags say."""
    from modelport.formats.tf.checkpoint import (
        checkpoint_entries,
        read_checkpoint,
        read_checkpoint_source,
    )
    from modelport.formats.tf.open import open_weights

    flags, index, shards = unpack_checkpoint(data)
    folder = os.path.join(os.path.dirname(path), "ckpt")
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    prefix = os.path.join(folder, "model")
    with open(prefix + ".index", "wb") as fh:
        fh.write(index)
    for i, shard in enumerate(shards):
        with open(f"{prefix}.data-{i:05d}-of-{len(shards):05d}", "wb") as fh:
            fh.write(shard)
    verify = not flags & 1
    mode = (flags >> 1) % 4
    if mode == 0:
        read_checkpoint(prefix, verify=verify)
    elif mode == 1:
        checkpoint_entries(prefix)
    elif mode == 2:
        open_weights(prefix)
    else:
        read_checkpoint_source(prefix, verify=verify)


def _checkpoint_fixtures() -> list[tuple[bytes, list[bytes]]]:
    out = []
    for index in _fixture_files("*.index"):
        prefix = index.with_suffix("")
        shards = sorted(index.parent.glob(prefix.name + ".data-*"))
        if 1 <= len(shards) <= MAX_SHARDS:
            out.append((index.read_bytes(), [p.read_bytes() for p in shards]))
    return out


def checkpoint_seeds() -> list[bytes]:
    """Every fixture checkpoint, read verified, unverified and through open_weights."""
    return [pack_checkpoint(flags, index, shards) for index, shards in _checkpoint_fixtures()
            for flags in (0, 1, 4, 7)]


# -- a LevelDB table writer (valid checksums), so index mutations reach the entries

def _varint(n: int) -> bytes:
    return fs._varint(n)


def _block(entries: Sequence[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    body = bytearray()
    restarts = []
    previous = b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(body))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        body += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        body += key[shared:] + value
        previous = key
    body += b"".join(struct.pack("<I", r) for r in restarts or [0])
    return bytes(body + struct.pack("<I", len(restarts or [0])))


def write_table(items: Sequence[tuple[bytes, bytes]], block_entries: int = 7,
                restart_interval: int = 4) -> bytes:
    """A table of `items` in the given order (sorted or not), each block sealed with its crc."""
    from modelport.formats.tf import crc
    from modelport.formats.tf.sstable import MAGIC

    out = bytearray()

    def put(block: bytes) -> tuple[int, int]:
        offset = len(out)
        out.extend(block + b"\0" + struct.pack("<I", crc.mask(crc.crc32c(block + b"\0"))))
        return offset, len(block)

    index = []
    for start in range(0, len(items), max(1, block_entries)):
        chunk = items[start:start + max(1, block_entries)]
        offset, size = put(_block(chunk, restart_interval))
        index.append((max(k for k, _ in chunk), _varint(offset) + _varint(size)))
    meta = put(_block([], 1))
    handle = put(_block(index, 1))
    footer = b"".join(_varint(v) for v in (*meta, *handle))
    return bytes(out + footer + b"\0" * (40 - len(footer)) + struct.pack("<Q", MAGIC))


def _records(index: bytes) -> list[tuple[bytes, bytes]] | None:
    from modelport.errors import ModelportError
    from modelport.formats.tf.sstable import parse_table

    try:
        return parse_table(index, "index")
    except ModelportError:
        return None


_DTYPES = tuple(range(0, 34)) + (101, 102, 119, 20, 21, 7, 1, 1, 1, 2**31 - 1, -1)


def _entry_mutation(value: bytes, is_header: bool, shard_sizes: Sequence[int],
                    rng: random.Random) -> bytes:
    """One field of a BundleEntryProto (or the header) set to a boundary value."""
    from google.protobuf.message import DecodeError

    from modelport.schema.tf import tensor_bundle_pb2 as pb

    msg: Any = pb.BundleHeaderProto() if is_header else pb.BundleEntryProto()
    try:
        msg.ParseFromString(value)
    except DecodeError:
        return value
    near = [s + d for s in shard_sizes for d in (-1, 0, 1)] or [0]
    big = (2**31, 2**32, 2**62, 2**63 - 1, -1, -(2**63))
    if is_header:
        field = rng.randrange(4)
        if field == 0:
            msg.num_shards = rng.choice((0, 1, 2, 3, 5, 2**31 - 1, -1, 10**9))
        elif field == 1:
            msg.endianness = rng.choice((0, 1, 2, 7))
        elif field == 2:
            msg.version.min_consumer = rng.choice((0, 1, 2, -1))
        else:
            msg.version.bad_consumers.append(rng.choice((0, 1, 2)))
        return msg.SerializeToString()
    field = rng.randrange(9)
    if field == 0:
        msg.dtype = rng.choice(_DTYPES)
    elif field == 1:
        msg.offset = rng.choice((*near, *big, 0, 1, 3))
    elif field == 2:
        msg.size = rng.choice((*near, *big, 0, 1, 3, 4, msg.size + 1, max(0, msg.size - 1)))
    elif field == 3:
        msg.shard_id = rng.choice((0, 1, 2, 3, 4, -1, 2**31 - 1))
    elif field == 4 and msg.shape.dim:
        dim = rng.choice(msg.shape.dim)
        dim.size = rng.choice((0, 1, 2, -1, -2, 2**31, 2**40, 2**62, 2**63 - 1, dim.size * 2))
    elif field == 5:
        for _ in range(rng.choice((1, 2, 10, 40, 70))):
            msg.shape.dim.add().size = rng.choice((1, 1, 0, 2))
    elif field == 6:
        msg.shape.unknown_rank = not msg.shape.unknown_rank
    elif field == 7:
        extents = msg.slices.add().extent if not msg.slices or rng.random() < 0.5 \
            else rng.choice(msg.slices).extent
        for _ in range(rng.choice((0, 1, len(msg.shape.dim), 3))):
            ext = extents.add()
            ext.start = rng.choice((0, 1, 2, -1, 2**62))
            if rng.random() < 0.7:
                ext.length = rng.choice((0, 1, 2, 3, -1, 2**62))
    else:
        del msg.slices[:]
    return msg.SerializeToString()


def _mutate_records(records: list[tuple[bytes, bytes]], shard_sizes: Sequence[int],
                    rng: random.Random) -> None:
    if not records:
        records.append((b"", b"\x08\x01"))
        return
    i = rng.randrange(len(records))
    key, value = records[i]
    op = rng.randrange(8)
    if op <= 2:
        records[i] = (key, _entry_mutation(value, key == b"", shard_sizes, rng))
    elif op == 3:
        records[i] = (key, fs.mutate_protobuf(value, rng, [v for _, v in records]))
    elif op == 4:
        del records[i]
    elif op == 5:  # a new key: next to this one, a slice key, or a duplicate
        new = rng.choice((key + b"\0", key[:-1], key, b"\0" + key + b"\x00\x01\x01\x80\x81",
                          b"\xff" * 3, key + bytes([rng.randrange(256)])))
        records.insert(i + 1, (new, value))
        records.sort(key=lambda kv: kv[0]) if rng.random() < 0.8 else None
    elif op == 6:  # a copy of another entry's value (same offsets, other name)
        records[i] = (key, rng.choice(records)[1])
    else:
        j = rng.randrange(len(records))
        records[i], records[j] = records[j], records[i]


def mutate_checkpoint(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """One or two mutations of a part of the bundle (module docstring)."""
    flags, index, shards = unpack_checkpoint(data)
    for _ in range(rng.randint(1, 2)):
        r = rng.random()
        if r < 0.55:
            records = _records(index)
            if records is None:
                index = fs.mutate_bytes(index, rng, [])
                continue
            for _ in range(rng.randint(1, 3)):
                _mutate_records(records, [len(s) for s in shards], rng)
            index = write_table(records, rng.choice((1, 2, 7, 16, 1000)),
                                rng.choice((1, 2, 4, 16)))
            if rng.random() < 0.05:
                index = fs.mutate_bytes(index, rng, [])
        elif r < 0.8:
            i = rng.randrange(len(shards))
            shards[i] = fs.mutate_bytes(shards[i], rng, shards)
        elif r < 0.87:
            flags ^= 1 << rng.randrange(3)
        elif r < 0.92:
            if rng.random() < 0.5 and len(shards) > 1:
                del shards[rng.randrange(len(shards))]
            else:
                shards.append(rng.choice(shards))
        else:
            return fs.mutate_bytes(pack_checkpoint(flags, index, shards), rng, donors)
    return pack_checkpoint(flags, index, shards)


# ---------------------------------------------------------------------------------------------
# keras_h5

def run_weights(path: str, data: bytes) -> None:
    """open_weights: the dispatch by content, then the Keras reader (values read)."""
    from modelport.formats.tf.open import open_weights

    open_weights(path)


_H5_VALUES = (0, 1, 2, 3, 8, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**40, 2**63 - 1,
              2**64 - 1)


def mutate_h5(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """1-3 mutations: byte-level ones, or a little-endian integer (an address, size or count in
    HDF5's headers) overwritten with a boundary value or one near the file's size."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5 and len(out) >= 8:
            width = rng.choice((1, 2, 4, 8, 8))
            at = rng.randrange(len(out) - width + 1)
            value = rng.choice((*_H5_VALUES, len(out) - rng.randrange(64), len(out) + 8,
                                int.from_bytes(out[at:at + width], "little") + rng.choice(
                                    (-1, 1, 8, 4096))))
            out[at:at + width] = (value % (1 << 8 * width)).to_bytes(width, "little")
        else:
            out = bytearray(fs.mutate_bytes(bytes(out), rng, donors))
    return bytes(out[:fs.MAX_INPUT])


def h5_seeds() -> list[bytes]:
    return [p.read_bytes() for p in _fixture_files("*.h5")]


# ---------------------------------------------------------------------------------------------
# keras_archive

_CLASSES = ("Functional", "Sequential", "Model", "InputLayer", "Conv2D", "Dense",
            "BatchNormalization", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose",
            "Activation", "Add", "Concatenate", "Flatten", "LSTM", "Embedding", "", "conv2d")
_JSON_VALUES: tuple[Any, ...] = (None, True, 0, -1, 2**64, 1e308, float("nan"), "", "x" * 300,
                                 "conv2d", "layers", [], {}, [None], {"class_name": "Conv2D"},
                                 {"class_name": "Sequential", "config": {"layers": []}})


def _json_nodes(value: Any, out: list[tuple[Any, Any]]) -> None:
    if len(out) > 20_000:
        return
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for k, v in items:
        out.append((value, k))
        _json_nodes(v, out)


def mutate_json(text: bytes, rng: random.Random) -> bytes:
    """One mutation of a JSON document (bytes mutations when it does not parse)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return fs.mutate_bytes(text, rng, [])
    nodes: list[tuple[Any, Any]] = []
    _json_nodes(doc, nodes)
    if not nodes or rng.random() < 0.1:
        return fs.mutate_bytes(text, rng, [])
    parent, key = rng.choice(nodes)
    op = rng.randrange(6)
    if op == 0:
        parent[key] = rng.choice(_JSON_VALUES)
    elif op == 1:
        parent[key] = rng.choice(_CLASSES)
    elif op == 2:
        del parent[key]
    elif op == 3 and isinstance(parent, list):
        parent.insert(key, parent[key])
    elif op == 4:  # the node nested in itself: deep configs
        depth = rng.choice((2, 10, 200, 1000, 5000))
        marker = "\x00NEST\x00"
        parent[key] = marker
        body = json.dumps(doc)
        inner = json.dumps(rng.choice(nodes)[0])
        wrap = rng.choice((('{"class_name": "Sequential", "config": {"layers": [', "]}}"),
                           ("[", "]"), ('{"config": ', "}")))
        return body.replace(json.dumps(marker), wrap[0] * depth + inner + wrap[1] * depth,
                            1).encode()[:fs.MAX_INPUT]
    else:
        donor = rng.choice(nodes)
        parent[key] = donor[0][donor[1]]
    try:
        return json.dumps(doc).encode()
    except (ValueError, RecursionError):
        return text


def mutate_keras(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """Mutate a member (config.json as JSON, the weights as HDF5) or the member list, and zip
    again; or the zip's own bytes."""
    if rng.random() < 0.15:
        return fs.mutate_bytes(data, rng, donors)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [(i.filename, zf.read(i)) for i in zf.infolist()[:16]]
    except Exception:  # noqa: BLE001 - any damaged zip: mutate its bytes instead
        return fs.mutate_bytes(data, rng, donors)
    if not members:
        return fs.mutate_bytes(data, rng, donors)
    names = [n for n, _ in members]
    r = rng.random()
    if r < 0.45 and "config.json" in names:
        i = names.index("config.json")
        members[i] = ("config.json", mutate_json(members[i][1], rng))
    elif r < 0.85 and "model.weights.h5" in names:
        i = names.index("model.weights.h5")
        members[i] = ("model.weights.h5", mutate_h5(members[i][1], rng, []))
    else:
        i = rng.randrange(len(members))
        op = rng.randrange(3)
        if op == 0:
            del members[i]
        elif op == 1:
            members.append((rng.choice(("model.weights.json", "config.json", "x/../a")),
                            members[i][1]))
        else:
            members[i] = (rng.choice(("model.weights.h5", "config.json", "metadata.json")),
                          members[i][1])
    out = io.BytesIO()
    method = rng.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))
    with warnings.catch_warnings(), zipfile.ZipFile(
            out, "w", method, compresslevel=1 if method else None) as zf:
        warnings.simplefilter("ignore")  # duplicate member names are one of the mutations
        for name, body in members:
            zf.writestr(name, body)
    return out.getvalue()[:fs.MAX_INPUT]


def keras_seeds() -> list[bytes]:
    return [p.read_bytes() for p in _fixture_files("*.keras")]


# ---------------------------------------------------------------------------------------------
# tf_object_graph

_ENTRIES: dict[str, np.ndarray] = {}


def _fixture_entries() -> dict[str, np.ndarray]:
    """The variables of every fixture checkpoint (later fixtures win a shared name)."""
    if not _ENTRIES:
        from modelport.formats.tf.checkpoint import read_checkpoint

        for index in _fixture_files("*.index"):
            try:
                _ENTRIES.update(read_checkpoint(index.with_suffix("")))
            except Exception:  # noqa: BLE001, S112 - a fixture with an unreadable dtype
                continue
        _ENTRIES.pop(OBJECT_GRAPH_KEY, None)
    return _ENTRIES


def run_object_graph(path: str, data: bytes) -> None:
    from modelport.formats.tf.object_graph import read_object_graph_source

    entries = dict(_fixture_entries())
    graph = np.empty((), dtype=object)
    graph[()] = data
    entries[OBJECT_GRAPH_KEY] = graph
    read_object_graph_source(path, entries)


def object_graph_seeds() -> list[bytes]:
    from modelport.formats.tf.checkpoint import read_checkpoint

    out = []
    for index in _fixture_files("*.index"):
        try:
            value = read_checkpoint(index.with_suffix(""), names=[OBJECT_GRAPH_KEY])
        except Exception:  # noqa: BLE001, S112 - a name-based checkpoint has no graph
            continue
        out.append(bytes(value[OBJECT_GRAPH_KEY].reshape(-1)[0]))
    return out


def mutate_object_graph(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """Protobuf-tree mutations, or a graph-shaped one: a long chain of nodes, a cycle, a child
    pointing outside the graph, a variable node given children."""
    from google.protobuf.message import DecodeError

    from modelport.schema.tf import trackable_object_graph_pb2 as pb

    if rng.random() < 0.5:
        return fs.mutate_protobuf(data, rng, donors)
    graph = pb.TrackableObjectGraph()
    try:
        graph.ParseFromString(data)
    except DecodeError:
        return fs.mutate_protobuf(data, rng, donors)
    if not graph.nodes:
        graph.nodes.add()
    n = len(graph.nodes)
    node = rng.choice(graph.nodes)
    op = rng.randrange(5)
    if op == 0:  # a chain: each new node the only child of the previous
        length = rng.choice((10, 500, 1100, 5000, 20000))
        parent = graph.nodes[0] if rng.random() < 0.5 else node  # the root: reached by the walk
        for k in range(length):
            child = parent.children.add()
            child.node_id = n + k
            child.local_name = rng.choice(("layer-0", "_operations", "0", "_functional", "a"))
            parent = graph.nodes.add()
    elif op == 1:
        child = node.children.add()
        child.node_id = rng.randrange(n)
        child.local_name = rng.choice(("layer-0", "layer-1", "0", "_operations", "x"))
    elif op == 2:
        child = node.children.add()
        child.node_id = rng.choice((-1, n, 2**31 - 1, -(2**31)))
        child.local_name = "layer-0"
    elif op == 3:
        attr = node.attributes.add()
        attr.name = "VARIABLE_VALUE"
        attr.full_name = rng.choice(("", "a/b/c", "/", "x" * 200))
        attr.checkpoint_key = rng.choice(tuple(_fixture_entries())[:5] or ("k",))
    else:
        for child in node.children:
            child.local_name = rng.choice(("layer-2", "layer-10", "layer_with_weights-0",
                                           "_operations", "9", "-1", "01"))
    return graph.SerializeToString()[:fs.MAX_INPUT]

