"""Solver snapshots as Caffe writes them, plus modelport's extras.

Caffe's Solver::Snapshot (solver.cpp, sgd_solver.cpp) writes, for iteration N:
- `<snapshot_prefix>_iter_N.caffemodel`: the train net's NetParameter with weights
  (Net::ToProto), and
- `<snapshot_prefix>_iter_N.solverstate`: a SolverState message: `iter`, `learned_net` (the
  .caffemodel path as written), one `history` BlobProto per history blob (shape + float data),
  `current_step`. Protobuf writes the fields in number order; the blobs are framed by hand
  here so a large history is never copied into a protobuf message.

modelport also writes `<prefix>_iter_N.safetensors` (the PyTorch module's state_dict; a
shared `param { name }` blob once, its other names recorded as aliases) and
`<prefix>_iter_N.feedstate.json` (the data readers' positions), so a resumed run reads the
batches an uninterrupted run would have read.

A snapshot set is complete or ignored. Each file is written atomically, in the order
safetensors, caffemodel, solverstate, and the feedstate last: it is the set's manifest, with
the size and sha256 of the other three (format `modelport-feedstate-2`). A set whose
safetensors exists without a feedstate, or whose files are not the ones its feedstate records,
was interrupted (or mixed with another run's files): `check_snapshot_set` says so, `--resume`
refuses it, and `latest_snapshot` skips it. A solverstate with neither (Caffe's own snapshot)
is complete. Writers of one prefix hold an flock (`.<prefix>.snapshot.lock` beside the files)
and remove the `.<prefix>_iter_N.*.tmp` files killed runs left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.atomic import exclusive_lock, write_text, write_with
from modelport.errors import ConfigError, FormatError
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
FEEDSTATE_FORMAT = "modelport-feedstate-2"  # -1: feeds only (modelport before the manifest)
AUTO_RESUME = "auto"  # `--resume auto`: the latest complete snapshot set, if any


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
    """The module's state dict; a tensor several names share (Caffe's shared params) is stored
    once under its first name, the others recorded as aliases (modelport.weights_file)."""
    from modelport.weights_file import write_safetensors as write

    write(path, tensors, metadata, dedupe=True)


def _file_entry(path: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return {"file": os.path.basename(path), "bytes": os.path.getsize(path),
            "sha256": digest.hexdigest()}


def write_feedstate(path: str | os.PathLike[str], feeds: Mapping[str, Any],
                    files: Mapping[str, str] | None = None) -> None:
    """The feed state, written last: with `files` ({"caffemodel": path, "solverstate": path,
    "safetensors": path}) it is the snapshot set's manifest (their sizes and sha256)."""
    data: dict[str, Any] = {"format": FEEDSTATE_FORMAT, "feeds": feeds}
    if files:
        data["files"] = {kind: _file_entry(p) for kind, p in files.items()}
    write_text(path, json.dumps(data, indent=1, sort_keys=True))


def _split_prefix(prefix: str) -> tuple[str, str]:
    folder, base = os.path.split(os.path.abspath(prefix))
    return folder, base


@contextlib.contextmanager
def snapshot_lock(prefix: str) -> Iterator[None]:
    """Hold the snapshot lock of `prefix` (waiting for another writer of the same prefix) and
    remove the temporary files of killed snapshot writes."""
    folder, base = _split_prefix(prefix)
    os.makedirs(folder, exist_ok=True)
    with exclusive_lock(os.path.join(folder, f".{base}.snapshot.lock"),
                        f"snapshots '{prefix}'", wait=True):
        remove_stale_temps(prefix)
        yield


def remove_stale_temps(prefix: str) -> list[str]:
    """Remove `.<prefix>_iter_N.*.tmp` (files a killed snapshot write left). Call it holding
    `snapshot_lock` so that no live writer's temporary file is taken."""
    folder, base = _split_prefix(prefix)
    pattern = re.compile(rf"\.{re.escape(base)}_iter_\d+\..*\.tmp\Z")
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            if pattern.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
                    removed.append(name)
    return removed


def _set_base(solverstate: str) -> str:
    for suffix in (".solverstate.h5", ".solverstate"):
        if solverstate.endswith(suffix):
            return solverstate[: -len(suffix)]
    return solverstate


def check_snapshot_set(solverstate: str | os.PathLike[str],
                       caffemodel: str | os.PathLike[str] | None = None) -> str | None:
    """None when the snapshot set of `solverstate` is complete (or is Caffe's own snapshot,
    which has no manifest); else what is wrong with it. `caffemodel`: the weights the resume
    will load (default: the file the manifest names, beside the solverstate)."""
    state = os.fspath(solverstate)
    base = _set_base(state)
    manifest = feedstate_path(state)
    st = base + ".safetensors"
    if not os.path.exists(manifest):
        if os.path.exists(st):
            return (f"{os.path.basename(st)} was written but not "
                    f"{os.path.basename(manifest)}, which completes the set")
        return None
    try:
        with open(manifest, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return f"{os.path.basename(manifest)} is unreadable"
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        return None  # modelport-feedstate-1 (before the manifest): nothing recorded
    folder = os.path.dirname(state)
    for kind, path in (("solverstate", state), ("caffemodel", caffemodel), ("safetensors", st)):
        record = files.get(kind)
        if not isinstance(record, dict):
            continue
        p = (os.fspath(path) if path is not None
             else os.path.join(folder, str(record.get("file", ""))))
        if not os.path.exists(p):
            return f"{os.path.basename(p)} is missing"
        if os.path.getsize(p) != record.get("bytes") or \
                _file_entry(p)["sha256"] != record.get("sha256"):
            return (f"{os.path.basename(p)} is not the file {os.path.basename(manifest)} "
                    "records")
    return None


def snapshot_sets(prefix: str) -> list[tuple[int, str]]:
    """(iteration, solverstate path) of every snapshot of `prefix`, latest first."""
    folder, base = _split_prefix(prefix)
    pattern = re.compile(rf"{re.escape(base)}_iter_(\d+)\.solverstate(\.h5)?\Z")
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            m = pattern.match(name)
            if m:
                found.append((int(m.group(1)), os.path.join(folder, name)))
    return sorted(found, reverse=True)


def latest_snapshot(prefix: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(the solverstate of the latest complete snapshot set of `prefix` or None, the
    [(solverstate, problem)] of the later, incomplete sets skipped)."""
    skipped: list[tuple[str, str]] = []
    for _iteration, path in snapshot_sets(prefix):
        problem = check_snapshot_set(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def incomplete_set_error(solverstate: str, problem: str, prefix: str | None) -> ConfigError:
    """The one-line error for resuming from an interrupted snapshot set."""
    latest = latest_snapshot(prefix)[0] if prefix else None
    fix = (f"resume from the latest complete set, {latest} (`--resume {AUTO_RESUME}` picks "
           "it)" if latest else "start again without --resume (no complete set is left)")
    return ConfigError(f"{solverstate}: incomplete snapshot set ({problem}): its writing was "
                       f"interrupted, or its files come from different runs. Fix: {fix}")


def read_feedstate(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The data feeds' saved positions beside a solverstate, None when there is no such file
    (FormatError when it is unreadable)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        return None
    try:
        with open(p, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError) as exc:
        raise FormatError(f"{p}: unreadable feed state ({exc}). Fix: delete it to restart the "
                          "data from the beginning as Caffe would") from None
    feeds = data.get("feeds") if isinstance(data, dict) else None
    return feeds if isinstance(feeds, dict) else None


def feedstate_path(solverstate: str) -> str:
    """The feedstate file that belongs to a .solverstate (or .solverstate.h5)."""
    base = solverstate
    for suffix in (".solverstate.h5", ".solverstate"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base + ".feedstate.json"


def history_arrays(history: Sequence[Any]) -> list[np.ndarray]:
    """The solver's history tensors as float32 numpy arrays (for the .solverstate)."""
    return [h.detach().to("cpu").float().numpy() for h in history]
