"""Write and read `.safetensors` files byte-deterministically, with shared tensors stored once.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian header
length, a JSON header `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
{str: str}}` padded with spaces to a multiple of 8, then the raw little-endian tensor bytes.
The `safetensors` library writes its metadata in hash order (two writes of the same tensors
differ byte-wise) and refuses tensors that share memory; this writer sorts the header and
streams each tensor's bytes straight from its storage.

Shared tensors (Caffe's `param { name: ... }` blobs are one tensor, in several layers): with
`dedupe=True` a tensor that is the same view of the same storage as an earlier one is written
once, under its first name, and the header's metadata records `modelport.aliases`
(`{"alias": "owner", ...}` as JSON); `read_safetensors` gives every name back.
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import torch

from modelport.atomic import write_with
from modelport.digest import StreamHash
from modelport.errors import FormatError

ALIASES_KEY = "modelport.aliases"

_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
           torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
           torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
_TORCH = {v: k for k, v in _DTYPES.items()}


def _view_key(t: torch.Tensor) -> tuple[Any, ...]:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
            tuple(t.stride()), t.dtype)


def encode_header(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None,
                  dedupe: bool = False) -> tuple[bytes, list[tuple[str, torch.Tensor]]]:
    """(the 8-byte length + padded JSON header, the tensors to write in order)."""
    if sys.byteorder != "little":  # pragma: no cover - every platform torch ships for
        raise FormatError("writing safetensors needs a little-endian machine")
    owners: dict[tuple[Any, ...], str] = {}
    aliases: dict[str, str] = {}
    order: list[tuple[str, torch.Tensor]] = []
    # widest dtypes first (then by name), so every tensor's data is aligned to its element size
    for name in sorted(tensors, key=lambda n: (-tensors[n].element_size(), n)):
        t = tensors[name].detach()
        if t.dtype not in _DTYPES:
            raise FormatError(f"tensor '{name}' has dtype {t.dtype}, which safetensors files "
                              "cannot hold here. Fix: convert it to a float or int type")
        key = _view_key(t)
        if dedupe and t.numel() and key in owners:
            aliases[name] = owners[key]
            continue
        owners.setdefault(key, name)
        order.append((name, t))
    header: dict[str, Any] = {}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    if aliases:
        meta[ALIASES_KEY] = json.dumps(aliases, sort_keys=True, separators=(",", ":"))
    if meta:
        header["__metadata__"] = dict(sorted(meta.items()))
    offset = 0
    for name, t in order:
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, order


def _raw(t: torch.Tensor) -> memoryview:
    flat = t.to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return flat.view(torch.uint8).numpy().data


def save(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str],
         metadata: Mapping[str, str] | None = None, dedupe: bool = False) -> str:
    """Write `tensors` to `path` as is (no temporary file: see `write_safetensors`); return
    the sha256 of the bytes written (hashed from the same buffers, not read back).

    Each tensor's bytes go from its own storage to the file (no intermediate copy; a
    non-contiguous tensor is made contiguous first), in chunks of CHUNK_BYTES. A file of more
    than one chunk is hashed on a worker thread while it is written (`digest.StreamHash`: the
    same sha256 from the same buffers, on a second core)."""
    from modelport.formats.caffe.mapped import CHUNK_BYTES, release_address_range

    head, order = encode_header(tensors, metadata, dedupe)
    body = sum(t.numel() * t.element_size() for _name, t in order)
    # a worker thread only pays for itself past one chunk
    with open(path, "wb") as fh, StreamHash(head, threaded=body > CHUNK_BYTES) as stream:
        fh.write(head)
        # chunks written but maybe not yet hashed: (address in a mapped file or None, bytes,
        # done once hashed); a chunk's pages are dropped once it is both
        pending: deque[tuple[int | None, int, Future[None]]] = deque()
        for _name, t in order:
            raw = _raw(t)
            address = t.data_ptr() if t.device.type == "cpu" and t.is_contiguous() else None
            for i in range(0, len(raw), CHUNK_BYTES):
                part = raw[i:i + CHUNK_BYTES]
                hashed = stream.feed(part)
                fh.write(part)
                pending.append((None if address is None else address + i, len(part), hashed))
                while len(pending) > 1:  # the hasher may lag one chunk behind the writer
                    _drop_written(pending.popleft(), release_address_range)
        while pending:
            _drop_written(pending.popleft(), release_address_range)
        return stream.hexdigest()


def _drop_written(chunk: tuple[int | None, int, Future[None]],
                  release: Callable[[int, int], None]) -> None:
    """Wait until a written chunk is hashed too; then, if it lies in a mapped caffemodel (the
    module of `modelport convert` views the file), drop its pages from the process, so the
    process never holds the whole file."""
    address, nbytes, hashed = chunk
    hashed.result()
    if address is not None:
        release(address, nbytes)


def write_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str] | None = None, dedupe: bool = False) -> str:
    """Write `tensors` atomically (a temporary file renamed into place); return the file's
    sha256."""
    digests: list[str] = []
    write_with(path, lambda tmp: digests.append(save(tensors, tmp, metadata, dedupe)))
    return digests[-1]


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor],
                                                             dict[str, str]]:
    """(tensors by name, aliases included as the same tensor; the metadata)."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise FormatError(f"cannot read '{p}': {exc.strerror or exc}. Fix: check the path") \
            from None
    try:
        return _parse_safetensors(data)
    except (ValueError, KeyError, TypeError, RuntimeError, AttributeError, RecursionError
            ) as exc:  # RecursionError: json's decoder on a header nested too deeply
        raise FormatError(f"{p}: not a readable safetensors file ({exc}). Fix: pass a file "
                          "modelport or safetensors wrote") from None


def _parse_safetensors(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """read_safetensors on the file's bytes; a malformed file raises ValueError, KeyError,
    TypeError, RuntimeError, AttributeError or RecursionError (read_safetensors names the
    file)."""
    size = int.from_bytes(data[:8], "little")
    if len(data) < 8 or size > len(data) - 8:
        raise ValueError("the header is longer than the file")
    header = json.loads(data[8:8 + size])
    meta = {str(k): str(v) for k, v in header.pop("__metadata__", {}).items()}
    body = memoryview(data)[8 + size:]
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        dtype = _TORCH[info["dtype"]]
        begin, end = (int(x) for x in info["data_offsets"])
        if not 0 <= begin <= end <= len(body):
            raise ValueError(f"tensor '{name}' lies outside the file")
        chunk = bytearray(body[begin:end])
        flat = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
        out[name] = flat.reshape([int(d) for d in info["shape"]])
    aliases = json.loads(meta.get(ALIASES_KEY, "{}"))
    for alias, owner in aliases.items():
        out[alias] = out[owner]
    return out, meta
