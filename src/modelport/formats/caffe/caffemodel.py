"""Read the weights of a binary `.caffemodel` (a NetParameter), V2 `layer` or V1 `layers`.

Only names and blobs are needed from a caffemodel: Caffe itself takes the architecture from the
prototxt and copies weights by layer name (Net::CopyTrainedLayersFrom). The file is memory
mapped and scanned at the wire level (see wire.py), so a 500 MB VGG-16 loads without protobuf's
64 MB limit and with one float32 copy of the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelport.errors import FormatError
from modelport.formats.caffe.blobproto import decode_blob
from modelport.formats.caffe.files import read_bytes
from modelport.formats.caffe.mapped import register_mapping
from modelport.formats.caffe.upgrade import V1_TYPE_NAMES
from modelport.formats.caffe.wire import WIRE_LEN, WIRE_VARINT, iter_fields
from modelport.ir import Blob

NET_LAYER = 100  # NetParameter.layer (V2)
NET_LAYERS = 2  # NetParameter.layers (V1)


@dataclass(frozen=True)
class StoredLayer:
    """A layer as found in a caffemodel: its name, type and weight blobs."""

    name: str
    type: str
    blobs: tuple[Blob, ...]


def _text(buf: memoryview, start: int, end: int, what: str) -> str:
    try:
        return bytes(buf[start:end]).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{what}: a layer name is not valid text; the file is corrupt "
                          "or not a caffemodel") from None


V2_BLOBS = 7  # LayerParameter.blobs (V2)
V0_BLOBS = 50  # V0LayerParameter.blobs (a V1 layer's `layer`)


def _read_named_layer(buf: memoryview, start: int, end: int, path: str,
                      blobs_field: int) -> StoredLayer:
    """A V2 LayerParameter or a V0LayerParameter: name (field 1), type (2), blobs
    (`blobs_field`). A V2 blob's errors name its index; a V0 blob's name only the layer."""
    name, type_ = "", ""
    blobs: list[Blob] = []
    for f in iter_fields(buf, start, end):
        if f.number == 1 and f.wire_type == WIRE_LEN:
            name = _text(buf, f.start, f.end, path)
        elif f.number == 2 and f.wire_type == WIRE_LEN:
            type_ = _text(buf, f.start, f.end, path)
        elif f.number == blobs_field and f.wire_type == WIRE_LEN:
            index = f" blob {len(blobs)}" if blobs_field == V2_BLOBS else ""
            blobs.append(decode_blob(buf, f.start, f.end, f"{path}: layer '{name}'{index}"))
    return StoredLayer(name, type_, tuple(blobs))


def _read_v1_layer(buf: memoryview, start: int, end: int, path: str) -> StoredLayer:
    name, type_ = "", ""
    blobs: list[Blob] = []
    v0: StoredLayer | None = None
    for f in iter_fields(buf, start, end):
        if f.number == 4 and f.wire_type == WIRE_LEN:
            name = _text(buf, f.start, f.end, path)
        elif f.number == 5 and f.wire_type == WIRE_VARINT:
            type_ = V1_TYPE_NAMES.get(f.value, f"V1 type {f.value}")
        elif f.number == 6 and f.wire_type == WIRE_LEN:
            blobs.append(decode_blob(buf, f.start, f.end, f"{path}: layer '{name}' blob "
                                     f"{len(blobs)}"))
        elif f.number == 1 and f.wire_type == WIRE_LEN:
            v0 = _read_named_layer(buf, f.start, f.end, path, V0_BLOBS)
    if v0 is not None and not blobs:
        return StoredLayer(name or v0.name, type_ or v0.type, v0.blobs)
    return StoredLayer(name, type_, tuple(blobs))


def read_caffemodel(path: str, progress: Callable[[int, int], None] | None = None,
                    ) -> list[StoredLayer]:
    """Return every layer stored in the caffemodel at `path`, in file order.

    Raises FormatError for a missing, empty, truncated or non-caffemodel file. `progress`, if
    given, is called with (bytes done, total bytes) after each layer.
    """
    buf = read_bytes(path, "weights file")
    register_mapping(buf)  # writers from views of it may release the pages they wrote
    total = len(buf)
    if total == 0:
        raise FormatError(f"weights file '{path}' is empty")
    layers: list[StoredLayer] = []
    try:
        for f in iter_fields(buf, 0, total):
            if f.wire_type != WIRE_LEN:
                continue
            if f.number == NET_LAYER:
                layers.append(_read_named_layer(buf, f.start, f.end, path, V2_BLOBS))
            elif f.number == NET_LAYERS:
                layers.append(_read_v1_layer(buf, f.start, f.end, path))
            if progress is not None:
                progress(f.end, total)
    except FormatError as exc:
        raise FormatError(f"weights file '{path}' is not a valid caffemodel: {exc}") from None
    if not layers:
        raise FormatError(
            f"weights file '{path}' holds no layers: it is not a caffemodel (binary "
            "NetParameter), or it is empty/truncated"
        )
    return layers
