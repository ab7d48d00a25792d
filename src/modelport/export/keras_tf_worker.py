"""The TensorFlow side of the Keras exports, run in its own process with KERAS_BACKEND=tensorflow.

`python -m modelport.export.keras_tf_worker JOB.json` (modelport.export.keras_tf writes the job
and starts it): the parent process has Keras on the torch backend, and Keras picks its backend
once per process, at its first import. For every case of the job this process

1. imports the generated `model_keras.py` and builds the model with its `model.weights.h5`;
2. runs it (TensorFlow backend) on the case's inputs, already in Keras's channels_last layout,
   and saves the outputs (and, when asked, the named layer outputs) as .npy files;
3. with `saved_model`: writes a TF SavedModel there (Keras 3's `model.export(dir,
   format="tf_saved_model")`), loads it back with `tf.saved_model.load` and calls its
   `serving_default` signature on the same inputs;
4. with `tflite`: converts that SavedModel with `tf.lite.TFLiteConverter.from_saved_model`,
   writes the flatbuffer there and runs it in `tf.lite.Interpreter` (its `serving_default`
   signature runner).

Nothing is compared here: the parent compares every result with the PyTorch module and moves
the files into place only when they match. Each case's `result.json` holds `{"ok": true}` or
`{"ok": false, "error": "<one line>"}`; one case failing does not stop the others. Inputs and
outputs are plain .npy arrays (`allow_pickle=False`).

Job format (JSON): {"cases": [{"name": str, "model_file": path, "weights": path,
"inputs": [path.npy per model input, in model.inputs order], "out_dir": path,
"blobs": [[key, layer_name, output_index or null], ...] (optional),
"saved_model": dir or null, "tflite": path or null}]}.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["main"]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= 400 else line[:397] + "..."


def _save(folder: str, arrays: Sequence[Any]) -> None:
    os.makedirs(folder, exist_ok=True)
    for i, a in enumerate(arrays):
        np.save(os.path.join(folder, f"{i}.npy"), np.asarray(a), allow_pickle=False)


def _import_generated(path: str, index: int) -> Any:
    """The generated model_keras.py as a module (a unique name per case: several cases' files
    are imported into one process)."""
    spec = importlib.util.spec_from_file_location(f"_modelport_keras_case_{index}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import '{path}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _as_list(outputs: Any) -> list[Any]:
    if isinstance(outputs, dict):
        return list(outputs.values())
    if isinstance(outputs, list | tuple):
        return list(outputs)
    return [outputs]


def _signature_outputs(result: dict[str, Any], count: int) -> list[np.ndarray]:
    """A serving signature's outputs in the model's output order: Keras names a list of outputs
    `output_0`, `output_1`, ... (numbered, not sorted as text)."""
    keys = list(result)
    numbered = [k for k in keys if re.fullmatch(r"output_\d+", k)]
    if len(numbered) == len(keys):
        keys = sorted(keys, key=lambda k: int(k.rpartition("_")[2]))
    if len(keys) != count:
        raise RuntimeError(f"the serving signature returns {len(keys)} output(s), the model "
                           f"{count}")
    return [np.asarray(result[k]) for k in keys]


def _signature_keys(spec_names: dict[str, str], input_names: Sequence[str]) -> list[str]:
    """The signature's argument name of each model input: TF sanitises argument names
    (`a.b` -> `a_b`, `2x` -> `arg_2x`) but keeps each input's own name on its TensorSpec,
    which is matched here."""
    by_name = {v: k for k, v in spec_names.items()}
    keys = []
    for name in input_names:
        key = by_name.get(name, name if name in spec_names else None)
        if key is None and len(spec_names) == 1:
            key = next(iter(spec_names))
        if key is None:
            raise RuntimeError(f"the serving signature has no input for '{name}' (it has "
                               f"{', '.join(sorted(spec_names))})")
        keys.append(key)
    return keys


def run_case(case: dict[str, Any], index: int, keras: Any, tf: Any) -> dict[str, Any]:
    """Steps 1-4 of the module docstring for one case; the seconds each step took."""
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    generated = _import_generated(case["model_file"], index)
    model = generated.load(case["weights"])
    arrays = [np.load(p, allow_pickle=False) for p in case["inputs"]]
    input_names = [t.name.split(":")[0] for t in model.inputs]
    seconds["load"] = time.perf_counter() - t0
    out_dir = case["out_dir"]

    t0 = time.perf_counter()
    outs = _as_list(model(arrays if len(arrays) > 1 else arrays[0], training=False))
    _save(os.path.join(out_dir, "keras"), [keras.ops.convert_to_numpy(o) for o in outs])
    seconds["run"] = time.perf_counter() - t0
    blobs = case.get("blobs") or []
    if blobs:
        t0 = time.perf_counter()
        tensors = []
        for _, layer_name, output_index in blobs:
            out = model.get_layer(layer_name).output
            tensors.append(out[output_index] if output_index is not None else out)
        probe = keras.Model(model.inputs, tensors)
        got = _as_list(probe(arrays if len(arrays) > 1 else arrays[0], training=False))
        _save(os.path.join(out_dir, "blobs"), [keras.ops.convert_to_numpy(g) for g in got])
        seconds["blobs"] = time.perf_counter() - t0

    saved_model = case.get("saved_model")
    if saved_model:
        t0 = time.perf_counter()
        model.export(saved_model, format="tf_saved_model", verbose=False)
        seconds["saved_model_export"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = tf.saved_model.load(saved_model)
        signature = loaded.signatures["serving_default"]
        specs = signature.structured_input_signature[1]
        keys = _signature_keys({k: spec.name for k, spec in specs.items()}, input_names)
        kwargs = {k: tf.constant(a) for k, a in zip(keys, arrays)}
        result = {k: v.numpy() for k, v in signature(**kwargs).items()}
        _save(os.path.join(out_dir, "saved_model"), _signature_outputs(result, len(outs)))
        seconds["saved_model_check"] = time.perf_counter() - t0
    tflite = case.get("tflite")
    if tflite:
        if not saved_model:
            raise RuntimeError("a TFLite conversion needs the SavedModel (job without one)")
        t0 = time.perf_counter()
        flatbuffer = tf.lite.TFLiteConverter.from_saved_model(saved_model).convert()
        with open(tflite, "wb") as fh:
            fh.write(flatbuffer)
        seconds["tflite_convert"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
        runner = interpreter.get_signature_runner("serving_default")
        # The TFLite signature keeps the inputs' own names (`data.x`, not TF's `data_x`); its
        # tensors are named serving_default_<name>:0.
        details = runner.get_input_details()
        names = {k: d["name"].removeprefix("serving_default_").rpartition(":")[0] or k
                 for k, d in details.items()}
        result = runner(**dict(zip(_signature_keys(names, input_names), arrays)))
        _save(os.path.join(out_dir, "tflite"), _signature_outputs(result, len(outs)))
        seconds["tflite_check"] = time.perf_counter() - t0
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m modelport.export.keras_tf_worker JOB.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as fh:
        job = json.load(fh)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from modelport.errors import ModelportError
    from modelport.optional import require

    try:
        tf = require("tensorflow", "tensorflow", "the TensorFlow SavedModel / TFLite export")
    except ModelportError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    import warnings

    warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice, absl chatter
    tf.get_logger().setLevel("ERROR")
    import keras

    if keras.backend.backend() != "tensorflow":
        print(f"Keras runs on the {keras.backend.backend()} backend here, not tensorflow. Fix: "
              "start this worker with KERAS_BACKEND=tensorflow", file=sys.stderr)
        return 2
    for index, case in enumerate(job["cases"]):
        try:
            status: dict[str, Any] = {"ok": True, "seconds": run_case(case, index, keras, tf)}
        except Exception as exc:  # reported per case, as one line; the parent raises
            status = {"ok": False, "error": _one_line(exc)}
        os.makedirs(case["out_dir"], exist_ok=True)
        with open(os.path.join(case["out_dir"], "result.json"), "w", encoding="utf-8") as fh:
            json.dump(status, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
