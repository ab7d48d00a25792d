"""Solver snapshots as Caffe writes them, plus modelport's extras.

Caffe's Solver::Snapshot (solver.cpp, sgd_solver.cpp) writes, for iteration N:
- `<snapshot_prefix>_iter_N.caffemodel`: the train net's NetParameter with weights
  (Net::ToProto), and
- `<snapshot_prefix>_iter_N.solverstate`: a SolverState message: `iter`, `learned_net` (the
  .caffemodel path as written), one `history` BlobProto per history blob (shape + float data),
  `current_step`. Protobuf writes the fields in number order; the blobs are framed by hand
  here so a large history is never copied into a protobuf message.

modelport also writes `<prefix>_iter_N.safetensors` (the PyTorch module's state_dict) and
`<prefix>_iter_N.feedstate.json` (the data readers' positions), so a resumed run reads the
batches an uninterrupted run would have read. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.atomic import write_text, write_with
from modelport.errors import FormatError
from modelport.formats.caffe.blobproto import decode_blob
from modelport.formats.caffe.files import read_bytes
from modelport.formats.caffe.wire import (
    WIRE_LEN,
    WIRE_VARINT,
    encode_key,
    encode_varint,
    iter_fields,
)

STATE_ITER, STATE_LEARNED_NET, STATE_HISTORY, STATE_CURRENT_STEP = 1, 2, 3, 4


@dataclass
class SolverState:
    """The content of a .solverstate file."""

    iter: int
    learned_net: str
    history: list[np.ndarray]
    current_step: int = 0


def snapshot_filename(prefix: str, iteration: int, extension: str) -> str:
    """Caffe's Solver::SnapshotFilename: prefix + "_iter_" + N + extension."""
    return f"{prefix}_iter_{iteration}{extension}"


def _len(number: int, n: int) -> bytes:
    return encode_key(number, WIRE_LEN) + encode_varint(n)


def _blob_header(arr: np.ndarray) -> tuple[bytes, bytes, int]:
    """(data field header, shape field, BlobProto length) as Caffe's Blob::ToProto writes."""
    dims = b"".join(encode_varint(int(d)) for d in arr.shape)
    shape = b""
    if arr.ndim:
        inner = _len(1, len(dims)) + dims
        shape = _len(7, len(inner)) + inner
    nbytes = int(arr.size) * 4
    head = _len(5, nbytes) if nbytes else b""
    return head, shape, len(head) + nbytes + len(shape)


def write_solverstate(path: str | os.PathLike[str], state: SolverState) -> None:
    """Write `state` as Caffe's SGDSolver::SnapshotSolverStateToBinaryProto does."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(encode_key(STATE_ITER, WIRE_VARINT) + encode_varint(int(state.iter)))
            name = state.learned_net.encode("utf-8")
            fh.write(_len(STATE_LEARNED_NET, len(name)) + name)
            for arr in state.history:
                flat = np.ascontiguousarray(arr, dtype="<f4")
                head, shape, total = _blob_header(flat)
                fh.write(_len(STATE_HISTORY, total))
                fh.write(head)
                fh.write(flat.reshape(-1).data.cast("B"))
                fh.write(shape)
            fh.write(encode_key(STATE_CURRENT_STEP, WIRE_VARINT)
                     + encode_varint(int(state.current_step)))

    write_with(path, write)


def _h5py() -> Any:
    from modelport.optional import require

    return require("h5py", "data", "HDF5 snapshots")


def write_solverstate_h5(path: str | os.PathLike[str], state: SolverState) -> None:
    """SGDSolver::SnapshotSolverStateToHDF5: int datasets `iter` and `current_step` (shape
    (1,)), string `learned_net`, group `history` with float datasets "0", "1", ..."""
    h5py = _h5py()

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as fh:
            fh.create_dataset("iter", data=np.array([state.iter], dtype=np.int32))
            fh.create_dataset("learned_net", data=state.learned_net.encode("utf-8"))
            fh.create_dataset("current_step", data=np.array([state.current_step], np.int32))
            group = fh.create_group("history")
            for i, arr in enumerate(state.history):
                group.create_dataset(str(i), data=np.asarray(arr, dtype=np.float32))

    write_with(path, write)


def _read_solverstate_h5(p: str) -> SolverState:
    h5py = _h5py()
    try:
        with h5py.File(p, "r") as fh:
            it = int(np.asarray(fh["iter"][()]).reshape(-1)[0])
            step = int(np.asarray(fh["current_step"][()]).reshape(-1)[0]) \
                if "current_step" in fh else 0
            learned = fh["learned_net"][()] if "learned_net" in fh else b""
            learned = learned.decode("utf-8") if isinstance(learned, bytes) else str(learned)
            group = fh["history"]
            history = [np.array(group[str(i)][()], dtype=np.float32)
                       for i in range(len(group))]
    except (OSError, KeyError) as exc:
        raise FormatError(f"{p}: not a Caffe HDF5 solver state ({exc}). Fix: pass the "
                          ".solverstate.h5 file Caffe or modelport wrote") from None
    return SolverState(it, learned, history, step)


def write_weights_h5(path: str | os.PathLike[str], layers: Sequence[str],
                     blobs: Mapping[str, Sequence[np.ndarray]]) -> None:
    """Net::ToHDF5: group `data` with one group per layer (in net order, also for layers
    without blobs) holding float datasets "0", "1", ... in Caffe's blob order."""
    h5py = _h5py()

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as fh:
            data = fh.create_group("data")
            for name in layers:
                group = data.create_group(name)
                for i, arr in enumerate(blobs.get(name, ())):
                    group.create_dataset(str(i), data=np.asarray(arr, dtype=np.float32))

    write_with(path, write)


def read_weights_h5(path: str | os.PathLike[str]) -> list[Any]:
    """A .caffemodel.h5 (Net::ToHDF5) as StoredLayers (Net::CopyTrainedLayersFromHDF5)."""
    from modelport.formats.caffe.caffemodel import StoredLayer
    from modelport.ir import Blob

    h5py = _h5py()
    p = os.fspath(path)
    layers = []
    try:
        with h5py.File(p, "r") as fh:
            data = fh["data"]
            for name in data:
                group = data[name]
                arrays = []
                for i in range(len(group)):
                    if str(i) not in group:
                        break
                    arrays.append(Blob(np.array(group[str(i)][()], dtype=np.float32)))
                layers.append(StoredLayer(name, "", tuple(arrays)))
    except (OSError, KeyError) as exc:
        raise FormatError(f"{p}: not a Caffe HDF5 weights file ({exc}). Fix: pass a "
                          ".caffemodel or .caffemodel.h5 written by Caffe") from None
    return layers


def read_solverstate(path: str | os.PathLike[str]) -> SolverState:
    """Read a Caffe solver state: binary SolverState proto, or HDF5 when it ends in .h5
    (Solver::Restore decides by the suffix too)."""
    p = os.fspath(path)
    if p.endswith(".h5"):
        read_bytes(p, "solver state")  # the usual missing-file message
        return _read_solverstate_h5(p)
    buf = read_bytes(p, "solver state")
    it, step, learned = 0, 0, ""
    history: list[np.ndarray] = []
    try:
        for f in iter_fields(buf, 0, len(buf)):
            if f.number == STATE_ITER and f.wire_type == WIRE_VARINT:
                it = int(f.value)
            elif f.number == STATE_CURRENT_STEP and f.wire_type == WIRE_VARINT:
                step = int(f.value)
            elif f.number == STATE_LEARNED_NET and f.wire_type == WIRE_LEN:
                try:
                    learned = bytes(buf[f.start:f.end]).decode("utf-8")
                except UnicodeDecodeError:  # a proto2 string field: the file is corrupt
                    raise FormatError("learned_net is not valid text") from None
            elif f.number == STATE_HISTORY and f.wire_type == WIRE_LEN:
                blob = decode_blob(buf, f.start, f.end, f"{p}: history blob {len(history)}")
                history.append(np.array(blob.data, dtype=np.float32))
    except FormatError as exc:
        raise FormatError(f"{p}: not a Caffe solver state ({exc}). Fix: pass the "
                          ".solverstate file Caffe or modelport wrote") from None
    return SolverState(it, learned, history, step)


def write_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, Any],
                      metadata: Mapping[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    write_with(path, lambda tmp: save_file(clean, tmp, metadata=dict(metadata or {})))


def write_feedstate(path: str | os.PathLike[str], feeds: Mapping[str, Any]) -> None:
    write_text(path, json.dumps({"format": "modelport-feedstate-1", "feeds": feeds},
                                indent=1, sort_keys=True))


def read_feedstate(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    p = os.fspath(path)
    if not os.path.exists(p):
        return None
    try:
        with open(p, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise FormatError(f"{p}: unreadable feed state ({exc}). Fix: delete it to restart the "
                          "data from the beginning as Caffe would") from None
    feeds = data.get("feeds") if isinstance(data, dict) else None
    return feeds if isinstance(feeds, dict) else None


def feedstate_path(solverstate: str) -> str:
    base = solverstate
    for suffix in (".solverstate.h5", ".solverstate"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base + ".feedstate.json"


def history_arrays(history: Sequence[Any]) -> list[np.ndarray]:
    return [h.detach().to("cpu").float().numpy() for h in history]
