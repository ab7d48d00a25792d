"""TensorFlow files of a converted net: `modelport export --saved-model DIR` (a TF SavedModel,
Keras 3's `model.export(dir, format="tf_saved_model")` on the TensorFlow backend) and `--tflite
FILE` (TensorFlow Lite, `tf.lite.TFLiteConverter` on that SavedModel).

This process runs Keras on the torch backend (Keras reads KERAS_BACKEND once, at its first
import), so the TensorFlow work happens in a child process with KERAS_BACKEND=tensorflow
(`modelport.export.keras_tf_worker`): it imports the generated `model_keras.py`, loads
`model.weights.h5`, runs the inputs, writes the SavedModel and the TFLite file into temporary
places, loads each back (`tf.saved_model.load` + the `serving_default` signature;
`tf.lite.Interpreter`) and saves their outputs as .npy. Here every output is compared with the
PyTorch module on the same inputs (`verify/tolerance.py`'s rule): a ParityError names the first
output beyond the tolerance and nothing is written; otherwise the files are renamed into place.

Layout: Keras runs channels_last, so the inputs the child gets and the outputs it returns are
NHWC (NDHWC, NLC); they are moved back to Caffe's NCHW before comparing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.atomic import fsync_dir, make_folder, umask
from modelport.errors import ConfigError
from modelport.export.common import ExportError
from modelport.optional import MissingDependencyError

__all__ = [
    "TensorFlowCase",
    "TensorFlowResult",
    "check_saved_model_target",
    "require_tensorflow",
    "run_tensorflow",
    "staged_folder",
    "worker_env",
]

PURPOSE = "the TensorFlow SavedModel / TFLite export"
WORKER = "modelport.export.keras_tf_worker"
#: Seconds the child may take (TF's import alone takes ~4 s; open_nsfw's SavedModel ~30 s).
WORKER_TIMEOUT = 1800


def require_tensorflow() -> None:
    """The `optional.require("tensorflow", "tensorflow")` error when TensorFlow is not installed,
    found without importing it (this process keeps Keras on the torch backend; TF's import
    costs seconds and happens in the child)."""
    try:
        found = importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingDependencyError("tensorflow", "tensorflow", PURPOSE)


@dataclass
class TensorFlowCase:
    """One model for the child: a folder with model_keras.py + model.weights.h5, its inputs in
    Keras's layout (model.inputs order), named layer outputs to return (`blobs`: (key, Keras
    layer name, output index or None)), and where to write a SavedModel / a TFLite file."""

    name: str
    keras_dir: str
    inputs: Sequence[np.ndarray]
    blobs: Sequence[tuple[str, str, int | None]] = ()
    saved_model: str | None = None
    tflite: str | None = None


@dataclass
class TensorFlowResult:
    """What the child computed for one case (Keras layout), or its one-line error."""

    name: str
    error: str | None = None
    outputs: list[np.ndarray] = field(default_factory=list)
    blobs: dict[str, np.ndarray] = field(default_factory=dict)
    saved_model: list[np.ndarray] = field(default_factory=list)
    tflite: list[np.ndarray] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _load_arrays(folder: pathlib.Path) -> list[np.ndarray]:
    if not folder.is_dir():
        return []
    count = len(list(folder.glob("*.npy")))
    return [np.load(folder / f"{i}.npy", allow_pickle=False) for i in range(count)]


def worker_env() -> dict[str, str]:
    """The child's environment: KERAS_BACKEND=tensorflow, TF's C++ logging off, and this
    modelport importable (it may run from a source tree)."""
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "tensorflow"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    src = str(pathlib.Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env


def run_tensorflow(cases: Sequence[TensorFlowCase], workdir: str | os.PathLike[str],
                   timeout: float = WORKER_TIMEOUT) -> list[TensorFlowResult]:
    """Run every case in ONE TensorFlow-backend child process (TF is imported once) and read
    back what it computed. A child that cannot start TensorFlow is a one-line ModelportError
    (MissingDependencyError when it is not installed); a case that fails carries its error."""
    require_tensorflow()
    work = pathlib.Path(workdir)
    job_cases: list[dict[str, Any]] = []
    for i, case in enumerate(cases):
        folder = work / f"case{i}"
        (folder / "in").mkdir(parents=True, exist_ok=True)
        paths = []
        for k, arr in enumerate(case.inputs):
            p = folder / "in" / f"{k}.npy"
            np.save(p, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
            paths.append(str(p))
        job_cases.append({
            "name": case.name,
            "model_file": os.path.join(case.keras_dir, "model_keras.py"),
            "weights": os.path.join(case.keras_dir, "model.weights.h5"),
            "inputs": paths,
            "out_dir": str(folder / "out"),
            "blobs": [list(b) for b in case.blobs],
            "saved_model": case.saved_model,
            "tflite": case.tflite,
        })
    job = work / "job.json"
    job.write_text(json.dumps({"cases": job_cases}), encoding="utf-8")
    try:
        proc = subprocess.run([sys.executable, "-m", WORKER, str(job)], env=worker_env(),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ExportError(f"the TensorFlow process did not finish within {timeout:.0f} s. "
                            "Fix: export a smaller net, or on a less loaded machine") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        if proc.returncode == 2 and "not installed" in last:
            raise MissingDependencyError("tensorflow", "tensorflow", PURPOSE,
                                         last.partition("(import failed: ")[2].rstrip(")."))
        raise ExportError(f"the TensorFlow process failed: {last}")
    results = []
    for case, spec in zip(cases, job_cases):
        out = pathlib.Path(spec["out_dir"])
        try:
            status = json.loads((out / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            status = {"ok": False, "error": "the TensorFlow process wrote no result"}
        if not status.get("ok"):
            results.append(TensorFlowResult(case.name, error=str(status.get("error"))))
            continue
        blobs = _load_arrays(out / "blobs")
        results.append(TensorFlowResult(
            case.name, outputs=_load_arrays(out / "keras"),
            blobs={key: arr for (key, _, _), arr in zip(case.blobs, blobs)},
            saved_model=_load_arrays(out / "saved_model"), tflite=_load_arrays(out / "tflite"),
            seconds=dict(status.get("seconds", {}))))
    return results


# ---------------------------------------------------------------------------------------------
# Publishing a SavedModel folder: built beside its destination, renamed into place.

def check_saved_model_target(path: str | os.PathLike[str]) -> str:
    """`path` may receive a SavedModel: missing, an empty folder, or an earlier SavedModel
    (a folder with saved_model.pb, replaced whole). Anything else is refused before any work,
    so no user file is ever overwritten."""
    target = os.fspath(path)
    if os.path.lexists(target):
        if not os.path.isdir(target) or os.path.islink(target):
            raise ConfigError(f"--saved-model '{target}' exists and is not a folder. Fix: give "
                              "a new folder path")
        entries = os.listdir(target)
        if entries and "saved_model.pb" not in entries:
            raise ConfigError(f"--saved-model '{target}' is a folder that holds other files "
                              "than a SavedModel. Fix: give a new or empty folder, or an "
                              "earlier SavedModel folder to replace")
    make_folder(os.path.dirname(os.path.abspath(target)), f"folder of '{target}'")
    return target


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike[str]) -> Iterator[str]:
    """A fresh temporary folder path beside `path` (not created: the SavedModel writer creates
    it); on success it replaces `path` (an earlier SavedModel there is swapped out, then
    removed); on failure it is removed and `path` is left as it was."""
    target = check_saved_model_target(path)
    parent = os.path.dirname(os.path.abspath(target))
    holder = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=parent)
    staged = os.path.join(holder, "saved_model")
    try:
        yield staged
        if not os.path.isdir(staged):
            raise ConfigError(f"no SavedModel was written for '{target}'")
        os.chmod(staged, 0o777 & ~umask())
        if os.path.isdir(target):
            old = os.path.join(holder, "old")
            os.replace(target, old)
        os.replace(staged, target)
        fsync_dir(parent)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Layout: Keras's channels_last <-> Caffe's channels first.

def to_channels_last(arr: np.ndarray) -> np.ndarray:
    """N x C x spatial... -> N x spatial... x C (an array of rank < 3 is unchanged)."""
    return np.ascontiguousarray(np.moveaxis(arr, 1, -1)) if arr.ndim >= 3 else arr


def from_channels_last(arr: np.ndarray) -> np.ndarray:
    """N x spatial... x C -> N x C x spatial... (rank < 3 unchanged)."""
    return np.ascontiguousarray(np.moveaxis(arr, -1, 1)) if arr.ndim >= 3 else arr
