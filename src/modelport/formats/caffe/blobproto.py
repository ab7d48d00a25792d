"""Decode Caffe BlobProto messages (weights and mean files) straight into numpy arrays.

Caffe stores a blob's values in `data` (packed float32), `double_data` (float64), or, in files
shrunk by OpenCV, `raw_data` with `raw_data_type` FLOAT16. The shape is `shape.dim`, or for
files written before 2015 the legacy `num`/`channels`/`height`/`width` quadruple.
"""

from __future__ import annotations

import math
import os

import numpy as np

from modelport.errors import FormatError
from modelport.formats.caffe import caffe_pb2
from modelport.formats.caffe.wire import (
    UNPACKED_RUN,
    WIRE_FIXED32,
    WIRE_FIXED64,
    WIRE_LEN,
    WIRE_VARINT,
    iter_fields,
    iter_fields_runs,
    read_varint,
    unpacked_values,
)
from modelport.ir import Blob

MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes (blob.hpp)
# One-byte keys of BlobProto's unpacked `data` (5, fixed32) and `double_data` (8, fixed64)
# values, and their widths: runs of them are decoded in numpy (wire.iter_fields_runs).
_UNPACKED_VALUES = {(5 << 3) | WIRE_FIXED32: 4, (8 << 3) | WIRE_FIXED64: 8}
INT_MAX = 2**31 - 1  # a Blob's dims and count are C++ ints
_RAW_DTYPES: dict[int, np.dtype] = {
    caffe_pb2.FLOAT: np.dtype("<f4"),
    caffe_pb2.DOUBLE: np.dtype("<f8"),
    caffe_pb2.FLOAT16: np.dtype("<f2"),
    caffe_pb2.INT: np.dtype("<i4"),
    caffe_pb2.UINT: np.dtype("<u4"),
}


def _packed_varints(buf: memoryview | bytes, start: int, end: int) -> list[int]:
    values = []
    pos = start
    while pos < end:
        v, pos = read_varint(buf, pos, end)
        values.append(v - (1 << 64) if v >= 1 << 63 else v)
    return values


def _decode_shape(buf: memoryview | bytes, start: int, end: int) -> list[int]:
    dims: list[int] = []
    for f in iter_fields(buf, start, end):
        if f.number != 1:
            continue
        if f.wire_type == WIRE_LEN:
            dims.extend(_packed_varints(buf, f.start, f.end))
        elif f.wire_type == WIRE_VARINT:
            dims.append(f.value - (1 << 64) if f.value >= 1 << 63 else f.value)
    return dims


def decode_blob(buf: memoryview | bytes, start: int, end: int, what: str) -> Blob:
    """Decode the BlobProto in buf[start:end]; `what` names it in error messages.

    Packed float32 `data` (how Caffe writes it; V1 and V2 layers alike) is returned as a
    read-only `np.frombuffer` view into `buf`, little-endian float32 as stored (a memory-mapped
    file stays mapped while the array lives), so reading a caffemodel copies no weights; the
    converter makes the one copy its parameters need. Only these encodings are copied: packed
    `double_data` and FP16/other `raw_data` (one conversion to float32, unavoidable), unpacked
    legacy values (one gather from between their keys, in numpy), and a blob whose values are
    split over several fields (concatenated). Every view lies inside buf[start:end]: a field
    running past the end or blob sizes that disagree with the values are a FormatError.
    """
    legacy = {1: 0, 2: 0, 3: 0, 4: 0}
    has_legacy = False
    shape: list[int] | None = None
    float_parts: list[np.ndarray] = []
    double_parts: list[np.ndarray] = []
    raw: tuple[int, int] | None = None
    raw_type: int = caffe_pb2.FLOAT
    for f in iter_fields_runs(buf, start, end, _UNPACKED_VALUES):
        if f.number in legacy and f.wire_type == WIRE_VARINT:
            # num/channels/height/width are int32: protobuf keeps the low 32 bits, signed
            low = f.value & 0xFFFFFFFF
            legacy[f.number] = low - (1 << 32) if low >= 1 << 31 else low
            has_legacy = True
        elif f.number == 7 and f.wire_type == WIRE_LEN:
            shape = _decode_shape(buf, f.start, f.end)
        elif f.number == 5:
            if f.wire_type == WIRE_LEN:
                if (f.end - f.start) % 4:
                    raise FormatError(f"{what}: packed float data has {f.end - f.start} bytes")
                float_parts.append(np.frombuffer(buf, dtype="<f4", count=(f.end - f.start) // 4,
                                                 offset=f.start))
            elif f.wire_type == UNPACKED_RUN:  # legacy unpacked floats: one copy
                float_parts.append(unpacked_values(buf, f, "<f4"))
        elif f.number == 8:
            if f.wire_type == WIRE_LEN:
                if (f.end - f.start) % 8:
                    raise FormatError(f"{what}: packed double data has {f.end - f.start} bytes")
                double_parts.append(np.frombuffer(buf, dtype="<f8",
                                                  count=(f.end - f.start) // 8, offset=f.start))
            elif f.wire_type == UNPACKED_RUN:
                double_parts.append(unpacked_values(buf, f, "<f8"))
        elif f.number == 10 and f.wire_type == WIRE_VARINT:
            raw_type = f.value
        elif f.number == 12 and f.wire_type == WIRE_LEN:
            raw = (f.start, f.end)

    # Caffe's Blob::FromProto: any legacy dim field present -> 4-D legacy shape; otherwise
    # `shape` (absent when the blob has zero axes, e.g. a channel-shared PReLU slope: a scalar).
    legacy_4d = has_legacy and shape is None
    if legacy_4d:
        shape = [legacy[1], legacy[2], legacy[3], legacy[4]]
    elif shape is None:
        shape = []
    if len(shape) > MAX_BLOB_AXES:  # Blob::Reshape: CHECK_LE(shape.size(), kMaxBlobAxes)
        raise FormatError(f"{what}: blob shape has {len(shape)} axes, Caffe allows at most "
                          f"{MAX_BLOB_AXES}; the file is corrupt")
    if any(d < 0 for d in shape):
        raise FormatError(f"{what}: negative dimension in blob shape {shape}")
    # Blob::Reshape: CHECK_LE(shape[i], INT_MAX / count_) "blob size exceeds INT_MAX". Checked on
    # the non-zero dims too: numpy refuses [0, 2^62, 2^62] with a raw ValueError although empty.
    if any(d > INT_MAX for d in shape) or math.prod(d for d in shape if d) > INT_MAX:
        raise FormatError(f"{what}: blob shape {tuple(shape)} is over Caffe's limit (each "
                          "dimension and the element count at most 2^31-1, \"blob size exceeds "
                          "INT_MAX\"); the file is corrupt")
    count = math.prod(shape)  # Python ints: an int64 product wraps ([2^32, 2^32] -> 0)

    if raw is not None:
        dtype = _RAW_DTYPES.get(raw_type)
        if dtype is None:
            raise FormatError(f"{what}: unknown raw_data_type {raw_type}")
        nbytes = raw[1] - raw[0]
        if nbytes % dtype.itemsize:
            raise FormatError(f"{what}: raw_data has {nbytes} bytes, not a multiple of "
                              f"{dtype.itemsize}")
        values = np.frombuffer(buf, dtype=dtype, count=nbytes // dtype.itemsize, offset=raw[0])
        data = values.astype(np.float32)
    elif double_parts and not float_parts:
        data = np.concatenate(double_parts).astype(np.float32)
    elif float_parts:
        data = np.concatenate(float_parts) if len(float_parts) > 1 else float_parts[0]
    else:
        data = np.zeros(0, dtype=np.float32)

    if data.size != count:
        raise FormatError(
            f"{what}: blob shape {tuple(shape)} needs {count} values but the file holds "
            f"{data.size}"
        )
    return Blob(data.reshape(shape), legacy_4d=legacy_4d)


def read_binaryproto(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a `.binaryproto` BlobProto file (e.g. imagenet_mean.binaryproto) as float32.

    Returns the array with Caffe's stored shape (usually 1 x C x H x W, channels in BGR order as
    stored). Legacy files without `shape` give a 4-D num x channels x height x width array.
    """
    from modelport.formats.caffe.files import read_bytes

    path = os.fspath(path)
    buf = read_bytes(path, "mean file")
    if not buf:
        raise FormatError(f"{path}: empty file, expected a BlobProto (.binaryproto)")
    try:
        blob = decode_blob(buf, 0, len(buf), path)
    except FormatError as exc:
        if str(exc).startswith(path):
            raise
        raise FormatError(f"mean file '{path}' is not a BlobProto (.binaryproto): {exc}") from None
    if blob.data.size == 0:
        raise FormatError(f"{path}: not a BlobProto mean file (no values found)")
    return blob.data


def read_mean(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mean file as `caffe.io.blobproto_to_array(blob)[0]` gives it: C x H x W, BGR."""
    data = read_binaryproto(path)
    if data.ndim == 4:
        if data.shape[0] != 1:
            raise FormatError(f"{path}: mean blob has num={data.shape[0]}, expected 1")
        return data[0]
    if data.ndim == 3:
        return data
    raise FormatError(f"{path}: mean blob has shape {data.shape}, expected 1 x C x H x W")
