"""The TensorFlow side of the Keras exports, run in its own process with KERAS_BACKEND=tensorflow
(or another Keras backend named by the job, for the backend tests: `"backend": "jax"`).

`python -m modelport.export.keras_tf_worker JOB.json` (modelport.export.keras_tf writes the job
and starts it): the parent process has Keras on the torch backend, and Keras picks its backend
once per process, at its first import. For every case of the job this process

1. imports the generated `model_keras.py` and builds the model with its `model.weights.h5`;
2. runs it (TensorFlow backend) on the case's inputs and saves the outputs (with `blobs`, also
   every blob a named Keras layer outputs, the last writer of an in-place blob winning as in
   Caffe's net.blobs) as .npy files;
3. with `saved_model`: writes a TF SavedModel there (Keras 3's `model.export(dir,
   format="tf_saved_model")`), loads it back with `tf.saved_model.load` and calls its
   `serving_default` signature on the same inputs;
4. with `tflite`: converts that SavedModel with `tf.lite.TFLiteConverter.from_saved_model`,
   writes the flatbuffer there and runs it in `tf.lite.Interpreter` (its `serving_default`
   signature runner).

Arrays cross the process boundary in Caffe's layout, by blob name: the generated file declares
its layouts (INPUT_NAMES / INPUT_LAYOUTS, OUTPUT_NAMES / OUTPUT_LAYOUTS, LAYER_TOPS:
"channels_last" holds Caffe axes (0, 2, ..., 1), "caffe" Caffe's order), and the transposes
happen here. Nothing is compared here: the parent compares every result with the PyTorch
module and moves the files into place only when they match. Each case's `result.json` holds
`{"ok": true, "outputs": [names], "blobs": [names], "seconds": {...}}` or `{"ok": false,
"error": "<one line>"}`; one case failing does not stop the others. Arrays are plain .npy
files (`allow_pickle=False`).

Job format (JSON): {"backend": "tensorflow" (default) | "jax", "cases": [{"name": str,
"model_file": path, "weights": path, "inputs": {blob: path.npy}, "out_dir": path,
"blobs": bool, "saved_model": dir or null, "tflite": path or null}]}.
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


CHANNELS_LAST = "channels_last"


def to_keras(array: np.ndarray, layout: str) -> np.ndarray:
    """A Caffe-order array in a Keras layout (channels_last: Caffe axes (0, 2, ..., 1))."""
    if layout == CHANNELS_LAST and array.ndim >= 3:
        return np.ascontiguousarray(np.moveaxis(array, 1, -1))
    return array


def to_caffe(array: np.ndarray, layout: str) -> np.ndarray:
    """A Keras-layout array back in Caffe's axis order."""
    if layout == CHANNELS_LAST and array.ndim >= 3:
        return np.ascontiguousarray(np.moveaxis(array, -1, 1))
    return array


def _declared(generated: Any, name: str) -> Any:
    value = getattr(generated, name, None)
    if value is None:
        raise RuntimeError(f"model_keras.py declares no {name} (not a modelport Keras export)")
    return value


def run_case(case: dict[str, Any], index: int, keras: Any, tf: Any) -> dict[str, Any]:
    """Steps 1-4 of the module docstring for one case: the status for result.json."""
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    generated = _import_generated(case["model_file"], index)
    model = generated.load(case["weights"])
    input_names = list(_declared(generated, "INPUT_NAMES"))
    input_layouts = list(_declared(generated, "INPUT_LAYOUTS"))
    output_names = list(_declared(generated, "OUTPUT_NAMES"))
    output_layouts = list(_declared(generated, "OUTPUT_LAYOUTS"))
    missing = [n for n in input_names if n not in case["inputs"]]
    if missing:
        raise RuntimeError(f"no data for input(s) {', '.join(missing)}")
    arrays = [to_keras(np.load(case["inputs"][n], allow_pickle=False), layout)
              for n, layout in zip(input_names, input_layouts)]
    # the signatures' own argument names for the inputs (Keras names them after the inputs)
    keras_input_names = [t.name.split(":")[0] for t in model.inputs]
    feed = arrays[0] if len(arrays) == 1 else arrays
    seconds["load"] = time.perf_counter() - t0
    out_dir = case["out_dir"]

    def save_outputs(folder: str, outs: Sequence[Any]) -> None:
        if len(outs) != len(output_names):
            raise RuntimeError(f"{len(outs)} output(s) for {len(output_names)} declared")
        _save(os.path.join(out_dir, folder),
              [to_caffe(np.asarray(o), layout) for o, layout in zip(outs, output_layouts)])

    t0 = time.perf_counter()
    outs = _as_list(model(feed, training=False))
    save_outputs("keras", [keras.ops.convert_to_numpy(o) for o in outs])
    seconds["run"] = time.perf_counter() - t0
    status: dict[str, Any] = {"ok": True, "outputs": output_names, "blobs": [],
                              "seconds": seconds}
    if case.get("blobs"):
        t0 = time.perf_counter()
        tensors, where = [], []
        for layer_name, tops in _declared(generated, "LAYER_TOPS").items():
            out = model.get_layer(layer_name).output
            layer_outs = out if isinstance(out, list | tuple) else [out]
            for tensor, (blob, layout) in zip(layer_outs, tops):
                tensors.append(tensor)
                where.append((blob, layout))
        probe = keras.Model(inputs=model.inputs, outputs=tensors)
        got = _as_list(probe(feed, training=False))
        last = {blob: i for i, (blob, _) in enumerate(where)}  # in-place: the last writer
        names = list(last)
        _save(os.path.join(out_dir, "blobs"),
              [to_caffe(np.asarray(keras.ops.convert_to_numpy(got[last[b]])), where[last[b]][1])
               for b in names])
        status["blobs"] = names
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
        keys = _signature_keys({k: spec.name for k, spec in specs.items()}, keras_input_names)
        result = signature(**{k: tf.constant(a) for k, a in zip(keys, arrays)})
        save_outputs("saved_model", _signature_outputs({k: v.numpy() for k, v in result.items()},
                                                       len(output_names)))
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
        names_by_key = {k: d["name"].removeprefix("serving_default_").rpartition(":")[0] or k
                        for k, d in details.items()}
        result = runner(**dict(zip(_signature_keys(names_by_key, keras_input_names), arrays)))
        save_outputs("tflite", _signature_outputs(result, len(output_names)))
        seconds["tflite_check"] = time.perf_counter() - t0
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run one job file (JSON) on the TensorFlow backend; 2 on a usage error."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m modelport.export.keras_tf_worker JOB.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as fh:
        job = json.load(fh)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    backend = str(job.get("backend", "tensorflow"))
    from modelport.errors import ModelportError
    from modelport.optional import require

    needs_tf = backend == "tensorflow" or any(
        c.get("saved_model") or c.get("tflite") for c in job["cases"])
    try:
        tf = require("tensorflow", "tensorflow", "the TensorFlow SavedModel / TFLite export") \
            if needs_tf else None
    except ModelportError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if backend != "tensorflow" and importlib.util.find_spec(backend) is None:
        print(f"Keras on the {backend} backend needs {backend}, which is not installed. Fix: "
              f"pip install {backend}", file=sys.stderr)
        return 2
    import warnings

    warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice, absl chatter
    if tf is not None:
        tf.get_logger().setLevel("ERROR")
    import keras

    if keras.backend.backend() != backend:
        print(f"Keras runs on the {keras.backend.backend()} backend here, not {backend}. Fix: "
              f"start this worker with KERAS_BACKEND={backend}", file=sys.stderr)
        return 2
    for index, case in enumerate(job["cases"]):
        try:
            status = run_case(case, index, keras, tf)
        except Exception as exc:  # reported per case, as one line; the parent raises
            status = {"ok": False, "error": _one_line(exc)}
        os.makedirs(case["out_dir"], exist_ok=True)
        with open(os.path.join(case["out_dir"], "result.json"), "w", encoding="utf-8") as fh:
            json.dump(status, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
