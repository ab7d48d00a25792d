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

Layout: arrays cross the process boundary in Caffe's layout, by blob name; the child moves them
to and from the layouts model_keras.py declares (4-D and 5-D inputs and outputs channels-last).
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.atomic import atomic_path, fsync_dir, make_folder, umask
from modelport.errors import ConfigError
from modelport.export.common import ExportError, ExportReport, compare_outputs
from modelport.optional import MissingDependencyError

__all__ = [
    "TensorFlowCase",
    "TensorFlowResult",
    "check_saved_model_target",
    "export_tensorflow",
    "export_tensorflow_args",
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
    """One model for the child: a folder with model_keras.py + model.weights.h5, its inputs by
    blob name in Caffe's layout, whether to return every named layer output (`blobs`), and
    where to write a SavedModel / a TFLite file."""

    name: str
    keras_dir: str
    inputs: Mapping[str, np.ndarray]
    blobs: bool = False
    saved_model: str | None = None
    tflite: str | None = None


@dataclass
class TensorFlowResult:
    """What the child computed for one case, by blob name in Caffe's layout (Keras on the
    TensorFlow backend: `outputs`, `blobs`; the reloaded files: `saved_model`, `tflite`), or
    its one-line error."""

    name: str
    error: str | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    blobs: dict[str, np.ndarray] = field(default_factory=dict)
    saved_model: dict[str, np.ndarray] = field(default_factory=dict)
    tflite: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _load_arrays(folder: pathlib.Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    if not folder.is_dir():
        return {}
    return {n: np.load(folder / f"{i}.npy", allow_pickle=False) for i, n in enumerate(names)}


def worker_env(backend: str = "tensorflow") -> dict[str, str]:
    """The child's environment: KERAS_BACKEND=`backend`, TF's C++ logging off, and this
    modelport importable (it may run from a source tree)."""
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    src = str(pathlib.Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env


def run_tensorflow(cases: Sequence[TensorFlowCase], workdir: str | os.PathLike[str],
                   timeout: float = WORKER_TIMEOUT, backend: str = "tensorflow"
                   ) -> list[TensorFlowResult]:
    """Run every case in ONE TensorFlow-backend child process (TF is imported once) and read
    back what it computed. A child that cannot start TensorFlow is a one-line ModelportError
    (MissingDependencyError when it is not installed); a case that fails carries its error.
    `backend` runs Keras on another backend instead (the JAX tests; no SavedModel there)."""
    if backend == "tensorflow" or any(c.saved_model or c.tflite for c in cases):
        require_tensorflow()
    work = pathlib.Path(workdir)
    job_cases: list[dict[str, Any]] = []
    for i, case in enumerate(cases):
        folder = work / f"case{i}"
        (folder / "in").mkdir(parents=True, exist_ok=True)
        paths = {}
        for k, (blob, arr) in enumerate(case.inputs.items()):
            p = folder / "in" / f"{k}.npy"
            np.save(p, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
            paths[blob] = str(p)
        job_cases.append({
            "name": case.name,
            "model_file": os.path.join(case.keras_dir, "model_keras.py"),
            "weights": os.path.join(case.keras_dir, "model.weights.h5"),
            "inputs": paths,
            "out_dir": str(folder / "out"),
            "blobs": case.blobs,
            "saved_model": case.saved_model,
            "tflite": case.tflite,
        })
    job = work / "job.json"
    job.write_text(json.dumps({"backend": backend, "cases": job_cases}), encoding="utf-8")
    try:
        proc = subprocess.run([sys.executable, "-m", WORKER, str(job)], env=worker_env(backend),
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
        outputs = [str(n) for n in status.get("outputs", [])]
        results.append(TensorFlowResult(
            case.name, outputs=_load_arrays(out / "keras", outputs),
            blobs=_load_arrays(out / "blobs", [str(n) for n in status.get("blobs", [])]),
            saved_model=_load_arrays(out / "saved_model", outputs),
            tflite=_load_arrays(out / "tflite", outputs),
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
# The export


def export_tensorflow(net_or_convert_dir: Any, *,
                      saved_model: str | os.PathLike[str] | None = None,
                      tflite: str | os.PathLike[str] | None = None,
                      keras_dir: str | os.PathLike[str] | None = None,
                      weights: str | os.PathLike[str] | None = None,
                      inputs: Mapping[str, np.ndarray] | None = None, rel: float | None = None,
                      input_shapes: Mapping[str, Sequence[int]] | None = None,
                      phase: str = "test", allow_missing_weights: bool = False
                      ) -> list[ExportReport]:
    """Write a TF SavedModel folder (`saved_model`) and/or a TFLite file (`tflite`) of a
    converted net, each checked against the PyTorch module first (module docstring).

    `net_or_convert_dir` is what `export_keras` takes (a CaffeNet, an IR Net, a conversion
    folder, a deploy.prototxt with `weights`). The Keras model comes from `keras_dir` when
    given (an export_keras folder of the same net: `modelport export --keras DIR
    --saved-model ...`), else from an export_keras into a temporary folder (checked there on
    this process's Keras backend). `inputs` are in Caffe's layout (default: seeded normal data
    of the declared shapes).

    Raises:
        ParityError: an output of the SavedModel / TFLite model (or of Keras on the TensorFlow
            backend) differs from the PyTorch module beyond `rel`; nothing is written.
        MissingDependencyError: TensorFlow is not installed.
        ExportError: the TensorFlow process failed (its one-line reason).
    """
    from modelport.backends.keras.view import check_inputs
    from modelport.export.keras import export_keras, keras_view
    from modelport.verify.tolerance import DEFAULT_REL

    if saved_model is None and tflite is None:
        raise ConfigError("nothing to export to TensorFlow. Fix: give a SavedModel folder "
                          "(--saved-model DIR) and/or a TFLite file (--tflite FILE)")
    rel = DEFAULT_REL if rel is None else rel
    if saved_model is not None:  # refused before any work
        check_saved_model_target(saved_model)
    if tflite is not None and os.path.isdir(tflite):
        raise ConfigError(f"--tflite '{os.fspath(tflite)}' is an existing folder. Fix: give a "
                          "file path")
    require_tensorflow()
    source = net_or_convert_dir
    if isinstance(source, str | os.PathLike) and not os.path.isdir(source):
        from modelport.caffe import load  # load a prototxt once, for the view and the export

        source = load(os.fspath(source), weights, phase=phase,
                      input_shapes=input_shapes or None,
                      allow_missing_weights=allow_missing_weights)
        weights, input_shapes = None, None
    view = keras_view(source, weights, input_shapes=input_shapes, phase=phase,
                      allow_missing_weights=allow_missing_weights)
    arrays = check_inputs(view, inputs)
    reference = final_blobs(view, arrays)
    targets = [(p, what) for p, what in ((saved_model, "TF SavedModel"), (tflite, "TFLite"))
               if p is not None]
    with contextlib.ExitStack() as stack:
        if tflite is not None and os.fspath(tflite) == os.fspath(saved_model or ""):
            raise ConfigError(f"--saved-model and --tflite are both '{tflite}'. Fix: give "
                              "each its own path")
        tflite_tmp = stack.enter_context(atomic_path(tflite)) if tflite is not None else None
        work = stack.enter_context(tempfile.TemporaryDirectory(prefix="modelport-tf-"))
        sm_dir = (stack.enter_context(staged_folder(saved_model)) if saved_model is not None
                  else os.path.join(work, "saved_model"))  # TFLite is converted from one
        if keras_dir is None:
            keras_dir = os.path.join(work, "keras")
            export_keras(source, keras_dir, weights=weights, inputs=arrays, rel=rel,
                         input_shapes=input_shapes, phase=phase,
                         allow_missing_weights=allow_missing_weights)
        case = TensorFlowCase(view.name, os.fspath(keras_dir), arrays, saved_model=sm_dir,
                              tflite=tflite_tmp)
        (result,) = run_tensorflow([case], os.path.join(work, "run"))
        if result.error is not None:
            raise ExportError(f"the TensorFlow export failed: {result.error}; nothing was "
                              "written")
        names = list(view.output_names)
        if sorted(result.outputs) != sorted(names):
            raise ExportError(f"the Keras model in '{os.fspath(keras_dir)}' has the outputs "
                              f"{', '.join(result.outputs)}, the net {', '.join(names)}. Fix: "
                              "give the --keras folder of this net, or none; nothing was "
                              "written")
        ref = {n: reference[n] for n in names}
        compare_outputs(ref, result.outputs, "Keras on the TensorFlow backend", rel)
        batch = int(next(iter(arrays.values())).shape[0]) if arrays else 1
        reports = []
        for path, what in targets:
            outs = result.saved_model if what == "TF SavedModel" else result.tflite
            diffs = compare_outputs(ref, outs, f"{what} '{os.fspath(path)}'", rel)
            reports.append(ExportReport(os.fspath(path), what, names, diffs, [batch]))
    return reports  # the ExitStack renamed the files into place: every check passed


def final_blobs(view: Any, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every blob's final value (after its last in-place layer) from the PyTorch modules."""
    blobs = {n: np.asarray(arrays[n], np.float32) for n in view.input_names}
    for (layer, _, _), tops in zip(view.layers, view.forward_tops(arrays)):
        blobs.update(zip(layer.tops, tops))
    return blobs


def export_tensorflow_args(args: Any, inputs: Mapping[str, np.ndarray] | None,
                           input_shapes: Mapping[str, Sequence[int]] | None
                           ) -> list[ExportReport]:
    """`modelport export SOURCE [WEIGHTS] --saved-model DIR --tflite FILE` with the command's
    options (--input, --tolerance, --input-shape, --phase, --allow-missing-weights); with
    `--keras OUTDIR` in the same command, the Keras model written there is the one exported."""
    refused = [flag for flag, given in (("--optimize", getattr(args, "optimize", False)),
                                        ("--outputs", getattr(args, "outputs", None)))
               if given]
    if refused:
        raise ConfigError(f"--saved-model / --tflite export the whole net as converted (through "
                          f"its Keras model), so {' and '.join(refused)} cannot apply to them. "
                          "Fix: export them in a command of their own")
    return export_tensorflow(args.source, saved_model=getattr(args, "saved_model", None),
                             tflite=getattr(args, "tflite", None),
                             keras_dir=getattr(args, "keras", None), weights=args.weights,
                             inputs=inputs, rel=args.tolerance, input_shapes=input_shapes,
                             phase=args.phase, allow_missing_weights=args.allow_missing_weights)
