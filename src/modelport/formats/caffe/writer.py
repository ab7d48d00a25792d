"""Write Caffe files: a binary `.caffemodel` (V2 NetParameter) and prototxt text.

`write_caffemodel` produces what Caffe's `Net::ToProto` + `WriteProtoToBinaryFile` produce
(`net.save()` in pycaffe): the net name, then every layer's full LayerParameter with its weight
blobs (BlobProto with `shape` and packed float32 `data`), each layer's `phase` set to the net's
phase when the prototxt left it unset (Caffe's Net::Init does that). For a net Caffe itself
saved, the bytes are identical to Caffe's file.

The file is streamed: each layer's non-blob fields are serialized by protobuf, the blobs are
framed by hand and their float32 bytes written straight from the arrays, so a 550 MB VGG-16
never exists twice in memory and protobuf's 2 GB message limit does not apply. Protobuf writes
known fields in field-number order; we splice the blobs (field 7) between fields 1-6 and the
rest, so the result is byte-for-byte what protobuf's serializer would emit for the whole message.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import numpy as np
from google.protobuf import text_format

from modelport.atomic import write_text, write_with
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.wire import WIRE_LEN, encode_key, encode_varint
from modelport.ir import Layer, Net

if TYPE_CHECKING:
    from modelport.backends.torch_module import CaffeNet

NET_NAME = 1  # NetParameter.name
NET_LAYER = 100  # NetParameter.layer
LAYER_BLOBS = 7  # LayerParameter.blobs
BLOB_DATA = 5  # BlobProto.data (packed float)
BLOB_SHAPE = 7  # BlobProto.shape
SHAPE_DIM = 1  # BlobShape.dim (packed int64)

_CHUNK = 1 << 24  # bytes of float data written per call

__all__ = ["StreamedBlob", "blob_arrays_with", "layer_blob_arrays", "net_parameter",
           "net_to_prototxt", "write_caffemodel", "write_layers", "write_prototxt"]


def _as_net(source: Net | CaffeNet) -> Net:
    return source if isinstance(source, Net) else source.net


def layer_blob_arrays(source: Net | CaffeNet) -> dict[str, list[np.ndarray]]:
    """The weight blobs of every layer, by layer name, in Caffe's blob order (float32).

    For an IR Net these are the stored blobs. For a converted module they are the module's
    current parameters/buffers (`caffe_blob_names`), reshaped to the shape the caffemodel stored
    when the element count agrees (so e.g. a legacy 1x1x1xN bias keeps Caffe's shape).
    """
    net = _as_net(source)
    result: dict[str, list[np.ndarray]] = {}
    if isinstance(source, Net):
        for layer in net.layers:
            if layer.blobs:
                result[layer.name] = [np.asarray(b.data, dtype=np.float32) for b in layer.blobs]
        return result
    for layer in net.layers:
        key = source.key_of(layer)  # the layer's own module (names may repeat)
        if key is None or layer.name in result:  # blobs by name: the first layer's
            continue
        tensors = source.layer_module(layer).caffe_blobs()
        arrays = []
        for i, t in enumerate(tensors):
            arr = t.detach().to("cpu").float().contiguous().numpy()
            if i < len(layer.blobs) and layer.blobs[i].data.size == arr.size:
                arr = arr.reshape(layer.blobs[i].data.shape)
            arrays.append(arr)
        if arrays:
            result[layer.name] = arrays
    return result


def _layer_param(layer: Layer, phase: int) -> caffe_pb2.LayerParameter:
    lp = caffe_pb2.LayerParameter()
    lp.CopyFrom(layer.param)
    del lp.blobs[:]
    if not lp.name:
        lp.name = layer.name
    if not lp.type:
        lp.type = layer.type
    if not lp.HasField("phase"):
        # Caffe's Net::Init: a layer inherits the net's phase (an int of the Phase enum)
        lp.phase = phase  # type: ignore[assignment]
    return lp


def _split_param(lp: caffe_pb2.LayerParameter) -> tuple[bytes, bytes]:
    """Serialize `lp` (no blobs) as (fields numbered below 7, fields numbered above 7)."""
    head = caffe_pb2.LayerParameter()
    tail = caffe_pb2.LayerParameter()
    head.CopyFrom(lp)
    tail.CopyFrom(lp)
    for field, _ in lp.ListFields():
        (tail if field.number < LAYER_BLOBS else head).ClearField(field.name)
    return head.SerializeToString(deterministic=True), tail.SerializeToString(deterministic=True)


def _len_field(number: int, payload_len: int) -> bytes:
    return encode_key(number, WIRE_LEN) + encode_varint(payload_len)


@dataclass(frozen=True)
class StreamedBlob:
    """A weight blob produced piece by piece while the file is written (for files too big to
    hold in memory): `chunks()` yields float32 arrays whose sizes add up to prod(shape)."""

    shape: tuple[int, ...]
    chunks: Callable[[], Iterable[np.ndarray]]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


BlobLike = np.ndarray | StreamedBlob


def _blob_frames(arr: BlobLike) -> tuple[bytes, int, bytes, int]:
    """(bytes before the float data, float byte count, bytes after, total BlobProto length).

    Caffe's Blob::ToProto writes `shape` and `data`; protobuf orders them data (5), shape (7).
    A zero-axis blob (a scalar, e.g. a channel-shared PReLU slope) has no `shape` field.
    """
    dims = b"".join(encode_varint(int(d)) for d in arr.shape)
    shape_field = b""
    if arr.ndim:  # Caffe never touches `shape` for a zero-axis blob, so the field is absent
        shape_msg = _len_field(SHAPE_DIM, len(dims)) + dims
        shape_field = _len_field(BLOB_SHAPE, len(shape_msg)) + shape_msg
    nbytes = int(arr.size) * 4
    data_head = _len_field(BLOB_DATA, nbytes) if nbytes else b""
    total = len(data_head) + nbytes + len(shape_field)
    return data_head, nbytes, shape_field, total


def _write_floats(fh: IO[bytes], arr: BlobLike) -> None:
    step = _CHUNK // 4
    pieces = arr.chunks() if isinstance(arr, StreamedBlob) else (arr,)
    written = 0
    for piece in pieces:
        flat = np.ascontiguousarray(piece, dtype="<f4").reshape(-1)
        for start in range(0, flat.size, step):
            fh.write(flat[start : start + step].data)
        written += flat.size
    if written != arr.size:
        raise ValueError(f"a streamed blob of shape {arr.shape} produced {written} values")


def _layer_chunks(layer: Layer, arrays: Sequence[BlobLike], phase: int,
                  ) -> tuple[int, Iterator[tuple[bytes | BlobLike, int]]]:
    head, tail = _split_param(_layer_param(layer, phase))
    frames = [_blob_frames(a) for a in arrays]
    blobs_len = sum(len(_len_field(LAYER_BLOBS, f[3])) + f[3] for f in frames)
    body_len = len(head) + blobs_len + len(tail)

    def chunks() -> Iterator[tuple[bytes | BlobLike, int]]:
        yield _len_field(NET_LAYER, body_len) + head, 0
        for arr, (data_head, nbytes, shape_field, total) in zip(arrays, frames):
            yield _len_field(LAYER_BLOBS, total) + data_head, 0
            if nbytes:
                yield arr, nbytes
            yield shape_field, 0
        yield tail, 0

    return body_len, chunks()


def blob_arrays_with(source: Net | CaffeNet, blobs: Mapping[str, Sequence[BlobLike]] | None
                     ) -> dict[str, Sequence[BlobLike]]:
    """`layer_blob_arrays(source)` with `blobs` (by layer name) taking precedence."""
    weights: dict[str, Sequence[BlobLike]] = dict(layer_blob_arrays(source))
    if blobs is not None:
        weights.update({k: [a if isinstance(a, StreamedBlob) else np.asarray(a, dtype=np.float32)
                            for a in v] for k, v in blobs.items()})
    return weights


def write_caffemodel(path: str | os.PathLike[str], source: Net | CaffeNet,
                     blobs: Mapping[str, Sequence[BlobLike]] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> int:
    """Write `source` (an IR Net with blobs, or a converted CaffeNet) as a V2 caffemodel, its
    layers as they are (Caffe's own net.save() layout, with the implicit Split layers, is
    `modelport.export.caffemodel.write_caffemodel(..., caffe_layout=True)`).

    Args:
        path: destination; written atomically (a temporary file renamed into place).
        source: the net; every layer is written with its parameters (as Caffe saves them).
        blobs: optional weights by layer name overriding those of `source` (Caffe blob order);
            a StreamedBlob is generated while writing, so the file never has to fit in memory.
        progress: called with (bytes written, total bytes) after each layer.

    Returns the file size in bytes.
    """
    return write_layers(path, _as_net(source), blob_arrays_with(source, blobs), progress)


def write_layers(path: str | os.PathLike[str], net: Net,
                 weights: Mapping[str, Sequence[BlobLike]],
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Stream `net`'s layers with `weights` (by layer name, Caffe blob order) as a V2
    caffemodel at `path` (atomically); returns the file size in bytes."""
    name = net.name.encode("utf-8")
    header = _len_field(NET_NAME, len(name)) + name if name else b""
    plans = []
    total = len(header)
    for layer in net.layers:
        body_len, chunks = _layer_chunks(layer, weights.get(layer.name, []), net.phase)
        total += len(_len_field(NET_LAYER, body_len)) + body_len
        plans.append(chunks)

    def write(tmp: str) -> None:
        done = 0
        with open(tmp, "wb") as fh:
            fh.write(header)
            done += len(header)
            for chunks in plans:
                for piece, nbytes in chunks:
                    if not isinstance(piece, bytes):
                        _write_floats(fh, piece)
                        done += nbytes
                    else:
                        fh.write(piece)
                        done += len(piece)
                if progress is not None:
                    progress(done, total)

    write_with(path, write)
    return total


def net_parameter(source: Net | CaffeNet, with_weights: bool = False,
                  input_shapes: Mapping[str, Sequence[int]] | None = None,
                  ) -> caffe_pb2.NetParameter:
    """The net as a NetParameter message (in memory: for small nets and prototxt text).

    `input_shapes` rewrites the shapes declared by Input layers (e.g. the shapes a module was
    converted with).
    """
    net = _as_net(source)
    msg = caffe_pb2.NetParameter()
    if net.name:
        msg.name = net.name
    weights = layer_blob_arrays(source) if with_weights else {}
    for layer in net.layers:
        lp = msg.layer.add()
        lp.CopyFrom(layer.param)
        del lp.blobs[:]
        if input_shapes and layer.type == "Input" and any(t in input_shapes for t in layer.tops):
            declared = net.input_shapes()
            del lp.input_param.shape[:]
            for top in layer.tops:
                shape = input_shapes.get(top, declared.get(top, ()))
                lp.input_param.shape.add().dim.extend(int(d) for d in shape)
        for arr in weights.get(layer.name, []):
            blob = lp.blobs.add()
            blob.shape.dim.extend(int(d) for d in arr.shape)
            blob.data.extend(np.asarray(arr, dtype=np.float32).reshape(-1).tolist())
    return msg


def net_to_prototxt(source: Net | CaffeNet,
                    input_shapes: Mapping[str, Sequence[int]] | None = None) -> str:
    """The net definition as prototxt text (no weights), readable by Caffe and by modelport.

    For a converted module, Input layers declare the shapes it was converted with unless
    `input_shapes` says otherwise."""
    if input_shapes is None and not isinstance(source, Net):
        input_shapes = {n: source.blob_shapes[n] for n in source.input_names}
    return text_format.MessageToString(net_parameter(source, input_shapes=input_shapes))


def write_prototxt(path: str | os.PathLike[str], source: Net | CaffeNet,
                   input_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
    """Write `net_to_prototxt(source)` to `path` atomically."""
    write_text(path, net_to_prototxt(source, input_shapes))
